"""Run modes, seeds, paths and devices: the settings every chapter starts from.

A chapter's parameters cell holds literal values only (so papermill can override them);
:func:`settings` turns them, together with the environment, into one :class:`Settings`
object the chapter prints and uses.

Environment variables:
    LLMREC_MODE      "quick" (default: CI and a first-time reader) or "full" (real numbers).
    LLMREC_DATA_DIR  folder with the MovieLens CSVs (default: data/ml-latest-small).
    LLMREC_CACHE_DIR folder for model copies and embedding caches (default: .cache/).
    LLMREC_DEVICE    force a device ("cpu", "cuda", "mps"); default: the best one present.
    LLMREC_DATA_VERIFY  "1" (default) checks the MovieLens files against the 2018 release's
                     checksums; "0" runs on unverified data in the same layout (your own data, a
                     teacher's term-project set, a derived copy). See :func:`data_verify` and
                     :func:`reference_data`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_RESULTS = PROJECT_ROOT / "results" / "full"  # the committed make reproduce run (tools/reproduce.py)
MODES = ("quick", "full")
DEFAULT_SEED = 20251016


def get_mode(mode: str | None = None) -> str:
    """The run mode: the explicit argument, else ``LLMREC_MODE``, else ``"quick"``.

    Args:
        mode: "quick", "full", or None / "" to read the environment.

    Returns:
        One of :data:`MODES` (ValueError, saying how to set it, for anything else).
    """
    value = mode if mode not in (None, "") else os.environ.get("LLMREC_MODE", "quick")
    value = str(value).strip().lower()
    if value not in MODES:
        raise ValueError(
            f"Unknown run mode {value!r}. Use one of {MODES}: set LLMREC_MODE=quick "
            "(minutes on a laptop) or LLMREC_MODE=full (real numbers, hours on CPU)."
        )
    return value


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The MovieLens folder: the explicit argument, else ``LLMREC_DATA_DIR``, else
    ``data/ml-latest-small`` inside the project.

    Args:
        path: the folder, or None to read the environment.

    Returns:
        The folder's path, user (~) expanded; it may not exist.
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("LLMREC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return PROJECT_ROOT / "data" / "ml-latest-small"


def relative_to_root(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` as a results file or manifest should record it: never an absolute machine path.

    Inside the project (``root``, default :data:`PROJECT_ROOT`): relative to it, e.g.
    ``results/full/rankings/ch02-item-knn.npz``. Inside the MovieLens folder (:func:`data_dir`,
    which usually lives outside the project): its name and the rest, e.g. ``ml-latest-small``.
    Anywhere else: relative to the project (``../...``), or only the name when no relative
    path exists (another drive). Forward slashes on every OS, so the JSON reads the same.

    Args:
        path: the path to record.
        root: the project folder (None: :data:`PROJECT_ROOT`).

    Returns:
        The path as text, never absolute.
    """
    p = Path(os.path.abspath(Path(path).expanduser()))
    base = Path(os.path.abspath(Path(root).expanduser() if root is not None else PROJECT_ROOT))
    data = Path(os.path.abspath(data_dir()))
    for anchor, prefix in ((base, Path()), (data, Path(data.name))):
        try:
            return (prefix / p.relative_to(anchor)).as_posix()
        except ValueError:
            continue
    try:
        return Path(os.path.relpath(p, base)).as_posix()
    except ValueError:  # Windows: another drive
        return p.name


def json_ready(settings) -> dict:
    """A settings dataclass as the values a saved config holds (an adapter's ``encoder.json``, a
    checkpoint's ``state.json``): its fields, with tuples as lists and an empty tuple as None.

    Args:
        settings: a dataclass instance.

    Returns:
        A dict that ``json.dumps`` writes and the dataclass's ``from_dict`` reads back.
    """
    from dataclasses import asdict

    return {k: (list(v) or None) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def command_line(module: str, argv: list[str] | None = None) -> str:
    """The command that ran ``python -m module``, quoted so it can be pasted into a shell: what
    a committed artifact records.

    Args:
        module: the module run with ``-m``.
        argv: its arguments (None: this process's).

    Returns:
        The command line.
    """
    import shlex
    import sys

    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m", module, *(shlex.quote(a) for a in args)])


def cache_dir(sub: str | None = None) -> Path:
    """Where model copies and embedding caches live (created on demand).

    Args:
        sub: a sub-folder (None: the cache folder itself).

    Returns:
        The folder: ``LLMREC_CACHE_DIR``, else ``.cache/`` in the project, plus ``sub``.
    """
    root = Path(os.environ.get("LLMREC_CACHE_DIR", PROJECT_ROOT / ".cache")).expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifacts_dir(sub: str | None = None) -> Path:
    """``artifacts/`` in the project, or its ``sub`` folder: the one place its path is spelled.

    Committed adapters (``adapters/``) and RecGPT generations (``recgpt/``) live there; quick
    mode reads them and full mode rewrites them.

    Args:
        sub: a sub-folder, e.g. ``"adapters"`` (None: ``artifacts/`` itself).

    Returns:
        The folder's path (not created).
    """
    path = PROJECT_ROOT / "artifacts"
    return path / sub if sub else path


def results_dir() -> Path:
    """Where chapters write their headline numbers (JSON) for later chapters.

    Returns:
        ``LLMREC_RESULTS_DIR``, else ``results/`` in the project (created on demand).
    """
    path = Path(os.environ.get("LLMREC_RESULTS_DIR", PROJECT_ROOT / "results")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def get_device(prefer: str | None = None) -> str:
    """cuda, then mps, then cpu, unless ``prefer`` or ``LLMREC_DEVICE`` names one.

    Args:
        prefer: a device to use ("cpu", "cuda", "cuda:1", "mps"); None: the environment, else
            the best one present.

    Returns:
        The device's name.
    """
    choice = prefer or os.environ.get("LLMREC_DEVICE")
    if choice:
        return choice
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@contextlib.contextmanager
def private_torch_rng(seed: int, num_threads: int | None = None):
    """Run a block under its own torch RNG seeded with ``seed`` (the caller's random state is
    restored afterwards) and, if given, ``num_threads`` intra-op threads (restored too).

    A small model on a busy machine can be many times faster on one thread: every op waits
    for the slowest of its threads.

    Args:
        seed: the block's torch seed.
        num_threads: intra-op threads inside the block (None: unchanged).

    Yields:
        Nothing: the block runs under the private state.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def seed_everything(seed: int = DEFAULT_SEED) -> int:
    """Seed Python, NumPy and (if imported) torch, so a chapter's numbers repeat.

    Args:
        seed: the seed.

    Returns:
        ``seed``.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return seed
    torch.manual_seed(seed)
    return seed


BF16_ENV = "LLMREC_BF16"  # "1" / "0" overrides the CPU check of :func:`bf16_is_fast`
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one; a
    container's host can have many more).

    Returns:
        The number of cores.
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device: str = "cpu") -> bool:
    """Whether bf16 autocast speeds this device up, rather than slowing it down.

    On a CPU without native bf16 instructions, PyTorch emulates bf16 matmuls: on an AVX2-only
    2-core machine a 2048-square product ran at 0.3 GFLOP/s under bf16 autocast against 124 in
    float32, so a training step took minutes instead of seconds. Such CPUs (most laptops) run in
    float32 instead. The decision is fixed per process, so every number of a run is computed
    one way.

    Args:
        device: "cpu", "cuda", "cuda:0", "mps".

    Returns:
        True on CUDA devices that support bf16 and on CPUs whose flags include AVX-512 BF16 or
        AMX-BF16 (Linux ``/proc/cpuinfo``); elsewhere a short timing probe decides.
        ``LLMREC_BF16=1`` or ``0`` overrides the CPU check.
    """
    import torch

    dev = device.split(":")[0]
    if dev == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev != "cpu":
        return False
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{BF16_ENV}={forced!r}: set it to 1 (use bf16 autocast) or 0 (float32)")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return any(f in flags for f in _BF16_CPU_FLAGS)
    return _bf16_probe()


def _bf16_probe(n: int = 256, repeats: int = 3) -> bool:
    """Time one bf16-autocast matmul against float32 (where no CPU flags can be read)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)

    def best(cast: bool) -> float:
        times = []
        for _ in range(repeats + 1):  # the first call warms the kernels up
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cast):
                a @ b
            times.append(time.perf_counter() - t)
        return min(times[1:])

    return best(True) < best(False)


# The machine the chapters' time promises were measured on: 2 AMD EPYC cores with AVX2 only,
# float32 matmul at 54 GFLOP/s (2026-12-05). A slower machine gets proportionally more time.
REFERENCE_GFLOPS = 50.0


def matmul_peak_gflops(dtype=None, n: int = 2048, repeats: int = 10) -> float:
    """Measured GFLOP/s of an n x n matmul on this machine (the denominator of MFU).

    The fastest of ``repeats`` timed matmuls: a peak is the best the machine does, and the
    minimum is not dragged down by another process waking up during one of them (a mean is,
    which on a shared machine could make an MFU come out above 1).

    Args:
        dtype: the matmul's dtype; None: the one the book's models run in here, bf16 where
            :func:`bf16_is_fast` says autocast is on, float32 otherwise.
        n: the matrices' side. 2048, because smaller products do not reach the peak in
            float32: on an AVX2 machine a 1024-square product ran at 132 GFLOP/s and a 2048
            one at 160, and batch encoding beat the first (an MFU above 1).
        repeats: timed repetitions.

    Returns:
        The best GFLOP/s measured.
    """
    import time

    import torch

    if dtype is None:
        dtype = torch.bfloat16 if bf16_is_fast("cpu") else torch.float32
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@functools.lru_cache(maxsize=None)
def matmul_gflops() -> float:
    """This machine's float32 matmul speed on the CPU, in GFLOP/s (:func:`matmul_peak_gflops`
    on 2048-square products, the best of 3). Cached per process, so a chapter measures it
    once (about two seconds on two cores).

    Returns:
        GFLOP/s.
    """
    import torch

    return matmul_peak_gflops(torch.float32, n=2048, repeats=3)


def time_budget(seconds: float, reference_gflops: float = REFERENCE_GFLOPS) -> float:
    """A time promise made on the reference machine (:data:`REFERENCE_GFLOPS`), on this one.

    A chapter that promises "under two minutes" asserts ``t < time_budget(120)``: the budget
    grows in proportion on a slower CPU (:func:`matmul_gflops`) and never shrinks on a faster
    one, so the claim tests the code's cost, not the reader's hardware.

    Args:
        seconds: the promise on the reference machine.
        reference_gflops: that machine's float32 matmul speed.

    Returns:
        The budget here, in seconds (at least ``seconds``).
    """
    if seconds <= 0 or reference_gflops <= 0:
        raise ValueError("seconds and reference_gflops must be positive")
    return seconds * max(1.0, reference_gflops / matmul_gflops())


def autocast(device: str = "cpu", enabled: bool = True):
    """bf16 autocast where it helps (:func:`bf16_is_fast`: CPUs with AVX-512 BF16 or AMX,
    bf16-capable GPUs); a no-op otherwise, so the block runs in float32.

    On the project's AVX-512 BF16 machines bf16 autocast was 3-7x faster than float32 and
    steadier; on CPUs without bf16 instructions it is hundreds of times slower.

    Args:
        device: the device the block runs on ("cpu", "cuda", "cuda:0", "mps").
        enabled: False gives a no-op context.

    Returns:
        A context manager.
    """
    if not enabled or not bf16_is_fast(device):
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


@dataclass(frozen=True)
class ModeSettings:
    """The book's one pattern for values that differ between the run modes (issue 15 part 4).

    A frozen dataclass whose fields are the values, with the values of each mode declared
    beside them in ``MODES``; :meth:`for_mode` builds the one for the current mode. Frozen, so
    a run cannot drift from what it printed, and one place for each number: a chapter shows
    the object rather than copying its numbers into prose. :class:`Settings` (a chapter's
    sizes, given by the chapter) follows the same protocol, and
    :class:`llmrec_lib.recipes.RunLength` subclasses this one.

    Attributes:
        mode: the run mode the values are for ("quick" or "full").
    """

    mode: str

    MODES: ClassVar[dict[str, dict]] = {}  # mode -> field values; each subclass declares its own

    @classmethod
    def for_mode(cls, mode: str | None = None):
        """The values of one run mode.

        Args:
            mode: "quick" or "full"; None reads ``LLMREC_MODE`` (see :func:`get_mode`).

        Returns:
            An instance of ``cls`` holding ``cls.MODES[mode]``.
        """
        resolved = get_mode(mode)
        if resolved not in cls.MODES:
            raise ValueError(f"{cls.__name__} declares no values for mode {resolved!r}: add them to its MODES")
        return cls(mode=resolved, **cls.MODES[resolved])


@dataclass(frozen=True)
class Settings:
    """A chapter's resolved settings, printed at its top (built by :meth:`for_mode`).

    Frozen like every per-mode setting (:class:`ModeSettings`); ``sizes`` is the chapter's own
    dict and stays a dict.
    """

    chapter: str
    mode: str
    seed: int
    device: str
    data_dir: Path
    backbone: str
    sizes: dict = field(default_factory=dict)

    def show(self) -> None:
        """Print the settings as a chapter's first output (the data folder by name, never its path)."""
        print(f"chapter {self.chapter} | mode={self.mode} | seed={self.seed} | device={self.device}")
        # by name, not by this machine's path: rendered books are shared
        where = " (LLMREC_DATA_DIR)" if os.environ.get("LLMREC_DATA_DIR") else ""
        print(f"data: {relative_to_root(self.data_dir)}{where}")
        print(f"backbone: {self.backbone}")
        for key, value in self.sizes.items():
            print(f"  {key}: {value}")

    def as_dict(self) -> dict:
        """The settings as a dict for a chapter's results, the data folder relative (no machine path)."""
        out = asdict(self)
        out["data_dir"] = relative_to_root(self.data_dir)  # no absolute machine path in results
        return out


    @classmethod
    def for_mode(
        cls,
        mode: str | None = None,
        *,
        chapter: str,
        quick: dict | None = None,
        full: dict | None = None,
        backbone: str = "smollm2-135m",
        seed: int = DEFAULT_SEED,
        data: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> "Settings":
        """Resolve a chapter's settings: the mode picks the ``quick`` or the ``full`` sizes.

        Seeds every generator with ``seed`` (:func:`seed_everything`) as a side effect, so a
        chapter's first cell makes its run repeatable.

        Args:
            mode: "quick" or "full"; None reads ``LLMREC_MODE``.
            chapter: the chapter's number ("03"), printed and stored in its results.
            quick: the chapter's sizes in quick mode.
            full: the chapter's sizes in full mode.
            backbone: the model the chapter starts from.
            seed: the seed of every random generator.
            data: the MovieLens folder; None reads ``LLMREC_DATA_DIR`` (see :func:`data_dir`).
            device: "cpu", "cuda" or "mps"; None picks the best one present.

        Returns:
            The chapter's :class:`Settings`.
        """
        resolved = get_mode(mode)
        sizes = dict((quick if resolved == "quick" else full) or {})
        seed_everything(seed)
        return cls(
            chapter=chapter,
            mode=resolved,
            seed=seed,
            device=get_device(device),
            data_dir=data_dir(data),
            backbone=backbone,
            sizes=sizes,
        )


def settings(
    chapter: str,
    mode: str | None = None,
    *,
    quick: dict | None = None,
    full: dict | None = None,
    backbone: str = "smollm2-135m",
    seed: int = DEFAULT_SEED,
    data: str | os.PathLike | None = None,
    device: str | None = None,
) -> Settings:
    """A chapter's settings: :meth:`Settings.for_mode`, under the name the chapters call.

    Args:
        chapter: the chapter's number ("03").
        mode: "quick" or "full"; None reads ``LLMREC_MODE``.
        quick: the chapter's sizes in quick mode.
        full: the chapter's sizes in full mode.
        backbone: the model the chapter starts from.
        seed: the seed of every random generator.
        data: the MovieLens folder; None reads ``LLMREC_DATA_DIR``.
        device: "cpu", "cuda" or "mps"; None picks the best one present.

    Returns:
        The chapter's :class:`Settings`.
    """
    return Settings.for_mode(mode, chapter=chapter, quick=quick, full=full, backbone=backbone, seed=seed,
                             data=data, device=device)


# --------------------------------------------------------------------------------------
# Your own data: one switch, and whether this is the reference release
# --------------------------------------------------------------------------------------

DATA_VERIFY_ENV = "LLMREC_DATA_VERIFY"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def data_verify(verify: bool | str | None = None) -> bool:
    """Whether the MovieLens files must match the 2018 ml-latest-small checksums.

    The explicit argument (a chapter's ``verify_data`` parameter), else ``LLMREC_DATA_VERIFY``,
    else True. ``LLMREC_DATA_VERIFY=0`` (or false/no/off) is the one switch that runs the book
    on unverified data in the MovieLens layout; :func:`llmrec_lib.data.load_movielens` called
    without ``verify`` follows it.

    Args:
        verify: True, False, a string such as "0" or "yes", or None to read the environment.

    Returns:
        Whether to verify.
    """
    value = verify if verify is not None else os.environ.get(DATA_VERIFY_ENV, "")
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text == "":
        return True
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(
        f"Cannot read {DATA_VERIFY_ENV}={value!r} as on or off. Use {DATA_VERIFY_ENV}=1 (the "
        f"default: check the 2018 ml-latest-small checksums) or {DATA_VERIFY_ENV}=0 (run on "
        "your own data in the MovieLens layout)."
    )


def reference_data(path: str | os.PathLike | None = None) -> bool:
    """True when the MovieLens folder (:func:`data_dir`) holds the 2018 ml-latest-small release
    the book's numbers come from: all four CSVs match ``data/ml-latest-small.sha256``.

    It hashes the files whatever :func:`data_verify` says, so with ``LLMREC_DATA_VERIFY=0`` the
    reference release still counts as the reference. Chapters assert claims pinned to the
    reference numbers when this is True and only report them otherwise (:class:`Claims`).
    A missing folder or file is simply not the reference (False, no error). The answer is
    cached per folder and per file size and modification time, so asking again is free.

    Args:
        path: the MovieLens folder (None: :func:`data_dir`).

    Returns:
        Whether it is the reference release.
    """
    from . import data  # data imports config: import at call time

    return data.is_reference(data_dir(path))


def data_status(path: str | os.PathLike | None = None) -> str:
    """One line for a chapter to print under its settings: which data it runs on and what that
    means for its claims.

    Args:
        path: the MovieLens folder (None: :func:`data_dir`).

    Returns:
        The line.
    """
    folder = data_dir(path)
    if reference_data(folder):
        return (f"data: {folder.name} is the 2018 ml-latest-small release (checksums match): "
                "every claim is asserted")
    how = "checksums skipped" if not data_verify() else "checksums on"
    return (
        f"data: {folder.name} is not the 2018 ml-latest-small release ({how}): claims pinned to "
        "the reference numbers are reported, not asserted; mechanics stay asserted"
    )


class Verdict:
    """What :meth:`Claims.check` returns: whether the claim held, as a bool would say it.

    ``bool(v)``, ``v == True`` and ``repr(v)`` behave as the bool ``v.held``. A chapter cell
    whose last line is a check shows nothing under it (``_ipython_display_``): the claim's
    row is already in the chapter's claims table, and a stray ``True`` under a cell tells a
    reader nothing.
    """

    __slots__ = ("held",)

    def __init__(self, held: bool) -> None:
        self.held = bool(held)

    def __bool__(self) -> bool:
        return self.held

    def __eq__(self, other) -> bool:
        return self.held == (other.held if isinstance(other, Verdict) else other)

    def __hash__(self) -> int:
        return hash(self.held)

    def __repr__(self) -> str:
        return repr(self.held)

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value (the claims table shows every claim)."""


@dataclass
class Claim:
    """One claim of a chapter: its text, whether it held (None: not tested on this data), whether
    it is pinned to the reference numbers, and a detail (the measured value, or why untested).
    """
    claim: str
    holds: bool | None  # None: not tested on this data (see Claims.skip)
    pinned: bool
    detail: str = ""


class Claims:
    """A chapter's checks, asserted or reported depending on the data.

    ``check(claim, holds, pinned=True)`` records one claim. A claim pinned to the reference
    numbers (``pinned=True``: "610 users", "item-kNN beats popularity by .05") fails the
    chapter only on the reference release (:func:`reference_data`); elsewhere it is recorded
    and reported. A claim about mechanics (``pinned=False``: no future leak, shapes, resume
    equals no interrupt) fails everywhere. :meth:`table` is the chapter's closing table.

    Committed artifacts (adapters, generations) were made from the reference split, so they
    fit only the reference release (:attr:`artifacts_fit`). Elsewhere a chapter trains or
    generates live, or records with :meth:`skip` the claims it cannot test, and why.
    """

    def __init__(self, chapter: str = "", reference: bool | None = None,
                 path: str | os.PathLike | None = None):
        self.chapter = chapter
        self.path = path
        self.reference = reference_data(path) if reference is None else bool(reference)
        self.items: list[Claim] = []

    def check(self, claim: str, holds, *, pinned: bool = True, detail: str = "") -> Verdict:
        """Record one claim; raise if it fails where it must hold (see the class); returns whether
        it held, as a :class:`Verdict` (a bool that a notebook cell does not print).
        """
        ok = bool(holds)
        self.items.append(Claim(claim, ok, bool(pinned), str(detail)))
        if not ok and (self.reference or not pinned):
            kind = "on the reference release" if pinned else "(a mechanic: asserted on any data)"
            extra = f" ({detail})" if detail else ""
            raise AssertionError(f"claim fails {kind}: {claim}{extra}")
        return Verdict(ok)

    @property
    def artifacts_fit(self) -> bool:
        """True when the committed adapters and generations fit this data: they were trained on,
        or generated for, the reference release's split, so they fit that release only. On other
        data they would score users whose test items they may have trained on."""
        return self.reference

    def skip(self, claim: str, why: str, *, pinned: bool = True) -> None:
        """Record a claim this data cannot test, with the reason (for example "needs the
        committed adapter, trained on the reference split"); ``pinned`` says which kind of claim
        it would have been. On the reference release nothing may be skipped: every claim is
        tested there, so skipping raises."""
        if self.reference:
            raise AssertionError(
                f"claim skipped on the reference release, where every claim is tested: {claim}"
            )
        self.items.append(Claim(claim, None, bool(pinned), f"not tested: {why}"))

    def check_committed(self, claim: str, test, why: str, *, pinned: bool = True):
        """A claim about committed artifacts: where they fit this data (:attr:`artifacts_fit`)
        ``test()`` runs and returns ``(holds, detail)``, checked as :meth:`check` does; elsewhere
        it never runs and the claim is recorded as not tested, with ``why``. Returns what
        :meth:`check` returns, or None when skipped."""
        if not self.artifacts_fit:
            self.skip(claim, why, pinned=pinned)
            return None
        holds, detail = test()
        return self.check(claim, holds, pinned=pinned, detail=detail)

    def table(self):
        """One row per claim: the claim, pinned or mechanic, and whether it holds on this data.

        A chapter's table is also kept as ``claims/chNN.json`` in :func:`results_dir`, so that
        :func:`claims_summary` can say, chapter by chapter, how many claims held on a run."""
        import pandas as pd

        said = {True: "yes", False: "no", None: "not tested"}
        rows = [{"claim": c.claim, "kind": "pinned to reference" if c.pinned else "mechanic",
                 "holds here": said[c.holds], "detail": c.detail} for c in self.items]
        if self.chapter:
            folder = results_dir() / "claims"
            folder.mkdir(exist_ok=True)
            record = {"chapter": self.chapter, "reference": self.reference, "claims": rows}
            (folder / f"ch{self.chapter}.json").write_text(json.dumps(record, indent=1) + "\n")
        return pd.DataFrame(rows, columns=["claim", "kind", "holds here", "detail"])

    def report(self):
        """A chapter's closing cell: the data it ran on, the guarantee that on the reference
        release every claim held, and :meth:`table` with every row and its whole detail shown.

        Returns:
            The table (a DataFrame). Raises AssertionError, naming the claims, if one failed on
            the reference release (:meth:`check` raises first in a chapter, so this guards code
            that recorded a failure without checking).
        """
        import pandas as pd

        print(data_status(self.path))
        if self.reference and self.failed:
            raise AssertionError("claims fail on the reference release: "
                                 + "; ".join(c.claim for c in self.failed))
        pd.set_option("display.max_rows", 200)  # every row, not the first and last five
        pd.set_option("display.max_colwidth", 200)
        return self.table()

    @property
    def failed(self) -> list[Claim]:
        """The claims that did not hold (recorded on data where they are only reported)."""
        return [c for c in self.items if c.holds is False]

    @property
    def skipped(self) -> list[Claim]:
        """The claims not tested on this data."""
        return [c for c in self.items if c.holds is None]


def claims_summary(folder: str | os.PathLike | None = None):
    """Chapter by chapter, how many claims held, failed and were not tested on one run, from the
    tables the chapters kept (:meth:`Claims.table`). ``python -m llmrec_lib.config claims
    [FOLDER]`` prints it.

    Args:
        folder: the run's results folder (None: :func:`results_dir`).

    Returns:
        A DataFrame: chapter, claims, hold, fail, not tested, data.
    """
    import pandas as pd

    folder = Path(folder) if folder is not None else results_dir()
    rows = []
    for path in sorted((folder / "claims").glob("ch*.json")):
        record = json.loads(path.read_text())
        said = [c["holds here"] for c in record["claims"]]
        rows.append({"chapter": record["chapter"], "claims": len(said),
                     "hold": said.count("yes"), "fail": said.count("no"),
                     "not tested": said.count("not tested"),
                     "data": "reference" if record["reference"] else "other"})
    return pd.DataFrame(rows, columns=["chapter", "claims", "hold", "fail", "not tested", "data"])


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 2 or sys.argv[1] != "claims":
        sys.exit("usage: python -m llmrec_lib.config claims [RESULTS_FOLDER]")
    summary = claims_summary(sys.argv[2] if len(sys.argv) > 2 else None)
    print(summary.to_string(index=False) if len(summary) else "no claims tables found")
