"""Run chapters in full mode, in order, and record what it took: ``make reproduce``.

Each notebook is executed with ``LLMREC_MODE=full`` and ``LLMREC_RESULTS_DIR`` pointing at
``--results-dir`` (default ``results/full``); the executed notebooks go to ``--build-dir``
(default ``_build/full``) and the PNG figures they show to ``figures/`` in the results folder. A manifest, ``reproduce.json`` in the results folder, records the
machine, the commit, and for each chapter its wall seconds, when it finished and the hashes of
the code it ran (the chapter's source and the library).

Full mode takes hours on a laptop, so the run is resumable at two levels: a chapter that
finished with the same code is skipped when the command is run again, and the training runs
inside a chapter resume from their checkpoints in ``.cache/``. ``--force`` reruns every
chapter. A failing chapter stops the run with a non-zero exit and is recorded as failed.

Usage (the Makefile does this)::

    python tools/reproduce.py _build/notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "reproduce.json"

sys.path.insert(0, str(ROOT))  # the library, also when run from a checkout without pip install -e
from llmrec_lib.config import relative_to_root  # noqa: E402


def _sha_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def chapter_source(notebook: Path, root: Path = ROOT) -> Path:
    """The py:percent source of a generated notebook (``chapters/<stem>.py``), else the notebook."""
    src = root / "chapters" / f"{notebook.stem}.py"
    return src if src.is_file() else notebook


def hardware() -> dict:
    """The machine, in the words a reader needs to compare their time with ours."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "os": platform.platform()}
    try:
        info["ram_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def git_commit(root: Path = ROOT) -> str:
    """HEAD's short hash, marked when tracked files other than ``artifacts/`` and ``results/``
    differ from it: full mode rewrites those two itself, so only other changes mean that the
    code that ran is not the commit's."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)artifacts", ":(exclude)results"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
    return (rev or "unknown") + ("+uncommitted changes" if dirty else "")


def load_manifest(path: Path) -> dict:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"{path} is not valid JSON; starting a new manifest", file=sys.stderr)
    return {}


def _write(path: Path, manifest: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)  # a kill never leaves half a manifest


def execute(notebook: Path, build_dir: Path, env: dict) -> int:
    """Execute one notebook with nbconvert into ``build_dir``; returns the exit status."""
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
           "--ExecutePreprocessor.timeout=-1", "--output-dir", str(build_dir), str(notebook)]
    return subprocess.run(cmd, env=env).returncode


def export_figures(executed: Path, out_dir: Path) -> list[Path]:
    """Write every PNG an executed notebook shows to ``out_dir/<stem>-<cell>-<n>.png``."""
    import base64

    import nbformat

    nb = nbformat.read(executed, as_version=4)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{executed.stem}-*.png"):
        old.unlink()  # figures of an earlier run of this chapter
    paths = []
    for ci, cell in enumerate(nb.cells):
        n = 0
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                path = out_dir / f"{executed.stem}-{ci:03d}-{n}.png"
                path.write_bytes(base64.b64decode(png))
                paths.append(path)
                n += 1
    return paths


def run(notebooks: list[Path], results_dir: Path, build_dir: Path, *, force: bool = False,
        lib_dir: Path = ROOT / "llmrec_lib", root: Path = ROOT, executor=execute) -> dict:
    """Execute ``notebooks`` in order in full mode; returns the manifest (also written)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    missing = [str(nb) for nb in notebooks if not nb.is_file()]
    if missing:
        raise FileNotFoundError(f"no such notebook: {missing}; build them first (make notebooks)")
    path = results_dir / MANIFEST
    manifest = load_manifest(path)
    lib_sha = _sha_files(lib_dir.rglob("*.py"))
    chapters = manifest.setdefault("chapters", {})
    manifest.update({
        "command": "make reproduce", "mode": "full", "hardware": hardware(), "commit": git_commit(root),
        "library_sha": lib_sha,  # the folders relative to the project: no absolute machine path
        "results_dir": relative_to_root(results_dir, root), "build_dir": relative_to_root(build_dir, root),
    })
    env = {**os.environ, "LLMREC_MODE": "full", "LLMREC_RESULTS_DIR": str(results_dir.resolve())}
    for nb in notebooks:
        key = nb.stem
        src_sha = _sha_files([chapter_source(nb, root)])
        done = chapters.get(key, {})
        if (not force and done.get("status") == "done" and done.get("source_sha") == src_sha
                and done.get("library_sha") == lib_sha and (build_dir / nb.name).is_file()):
            print(f"== {key}: done earlier with the same code ({done['seconds']:.0f} s); skipped", flush=True)
            if "figures" not in done:  # finished by an older runner that did not export them
                done["figures"] = len(export_figures(build_dir / nb.name, results_dir / "figures"))
                _write(path, manifest)
            continue
        print(f"== {key}: running in full mode", flush=True)
        chapters[key] = {"status": "running", "started": dt.datetime.now().isoformat(timespec="seconds"),
                         "source_sha": src_sha, "library_sha": lib_sha}
        _write(path, manifest)
        t0 = time.perf_counter()
        rc = executor(nb, build_dir, env)
        chapters[key].update(seconds=round(time.perf_counter() - t0, 1),
                             finished=dt.datetime.now().isoformat(timespec="seconds"),
                             status="done" if rc == 0 else "failed")
        _write(path, manifest)
        if rc != 0:
            raise SystemExit(f"{key} failed in full mode (exit {rc}); fix it and rerun: finished chapters are skipped")
        figures = export_figures(build_dir / nb.name, results_dir / "figures") if (build_dir / nb.name).is_file() else []
        chapters[key]["figures"] = len(figures)
        _write(path, manifest)
        print(f"== {key}: {chapters[key]['seconds']:.0f} s, {len(figures)} figures", flush=True)
    manifest["total_seconds"] = round(sum(c.get("seconds", 0) for c in chapters.values()), 1)
    _write(path, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results" / "full")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "_build" / "full")
    ap.add_argument("--force", action="store_true", help="rerun chapters that finished earlier")
    args = ap.parse_args(argv)
    m = run(args.notebooks, args.results_dir, args.build_dir, force=args.force)
    print(f"full-mode results: {args.results_dir} ({m['total_seconds']:.0f} s of chapters in all; "
          f"executed notebooks: {args.build_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
