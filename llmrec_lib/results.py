"""The results contract: what each chapter writes for later chapters, checked when written and read.

A chapter ends by saving its headline numbers as ``chNN.json`` in :func:`config.results_dir`
(``results/`` in quick mode; ``results/full/`` holds the committed full-mode run). Later
chapters read them instead of copying numbers by hand. Nothing checked those files before, so
a renamed key failed three chapters later as a bare ``KeyError``. Here each chapter declares
the record it owes (:data:`RECORDS`): the keys another chapter reads, with their kinds. The
rest of a record is free.

* :func:`save` checks a record against its declaration, writes every path in it relative to
  the repository (:func:`config.relative_to_root`: no committed file holds a machine path) and
  writes the file;
* :func:`load` reads a chapter's record and says which chapter to run when the file, or a key
  the caller needs, is missing;
* :func:`leaderboard` is the one table of a metric with its interval across chapters that
  chapters 03 and 08 show (each built it by hand before).

``tests/test_results.py`` validates every committed ``results/full/chNN.json`` against
:data:`RECORDS`.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import config

__all__ = ["Record", "RECORDS", "ResultsError", "path_of", "check", "save", "load", "leaderboard"]

# the kinds a declared key can hold; a trailing "?" also allows None (not produced on this data)
KINDS = {
    "text": (str,),
    "number": (numbers.Real,),
    "mapping": (dict,),
    "table": (list,),  # records: a list of rows, each a dict
    "flag": (bool,),
}


@dataclass(frozen=True)
class Record:
    """What chapter ``chapter`` (notebook ``notebook``) owes the chapters after it.

    ``keys``: key -> kind (see :data:`KINDS`; ``"number?"`` allows None), keys another chapter
    or the README reads, so every record must hold them. ``optional``: keys read only when
    present (kind checked when there). ``paths``: keys whose values are paths, or mappings of
    name -> path (``"settings.data_dir"`` reaches into a mapping); :func:`save` writes them
    relative to the repository.
    """

    chapter: str
    notebook: str
    keys: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    paths: tuple = ()


RECORDS = {
    r.chapter: r
    for r in (
        Record("00", "00_introduction", {"mode": "text"}),
        Record("01", "01_text_featurization", {"mode": "text", "share_users_fit": "mapping"}),
        Record("02", "02_baselines",
               {"mode": "text", "settings": "mapping", "table": "table", "cold": "table",
                "choices": "mapping", "sasrec": "mapping"},
               paths=("settings.data_dir",)),
        Record("03", "03_llm_dual_encoder",
               {"mode": "text", "summary": "mapping", "share": "number?",
                "relative_lift_recall@10": "number?", "linkedin_arm": "mapping"},
               optional={"multi_source_best_valid_gain": "number?", "fusion_weight": "number",
                         "multi_blend": "text"}),
        Record("04", "04_hard_negatives_ablations", {"mode": "text", "table": "table"}),
        Record("05", "05_matryoshka_ann",
               {"mode": "text", "sweep": "table", "matryoshka_vs_truncation_smallest": "mapping?"}),
        Record("06", "06_interest_mining", {"mode": "text", "compression": "mapping"}),
        Record("07", "07_tag_prediction",
               {"mode": "text", "tag_judges": "table?", "llm_it_v2": "mapping",
                "staleness": "mapping"}),
        Record("08", "08_three_towers",
               {"mode": "text", "chosen": "mapping", "fused_minus_user_tower_recall@50": "mapping",
                "explanation_judges": "mapping", "fit_seconds": "mapping"},
               optional={"headline": "mapping?", "seed_averaged": "mapping?"},
               paths=("settings.data_dir",)),
        Record("09", "09_offline_ab",
               {"mode": "text", "readout": "table", "adapter_sha": "mapping", "sources": "mapping"},
               paths=("sources",)),
        Record("10", "10_scaling_out", {"mode": "text"},
               optional={"ddp_speedup_vs_one_worker": "number", "ddp_speedup_vs_same_cores": "number",
                         "index": "mapping"}),
    )
}


class ResultsError(KeyError):
    """A results file is missing, or lacks a key the reader needs: the message says which
    chapter to run. A KeyError, so code that expected a plain missing key still catches it."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


def _declared(chapter: str) -> Record:
    chapter = f"{int(chapter):02d}" if str(chapter).isdigit() else str(chapter)
    if chapter not in RECORDS:
        raise ValueError(f"no results record is declared for chapter {chapter!r}: "
                         f"declare it in llmrec_lib/results.py::RECORDS (known: {sorted(RECORDS)})")
    return RECORDS[chapter]


def path_of(chapter: str, folder: str | os.PathLike | None = None) -> Path:
    """Where chapter ``chapter``'s record lives: ``chNN.json`` in ``folder`` (default
    :func:`config.results_dir`; :data:`config.REFERENCE_RESULTS` for the committed full run).

    Args:
        chapter: the chapter's number as a string ("02"); it must be declared in ``RECORDS``.
        folder: the results folder; None for the run's own.

    Returns:
        The path of the chapter's JSON record (it need not exist yet).
    """
    base = Path(folder) if folder is not None else config.results_dir()
    return base / f"ch{_declared(chapter).chapter}.json"


def _kind_ok(value, kind: str) -> bool:
    if kind.endswith("?") and value is None:
        return True
    types = KINDS[kind.rstrip("?")]
    return isinstance(value, types) and not (kind.rstrip("?") == "number" and isinstance(value, bool))


def check(chapter: str, record: dict) -> list[str]:
    """The ways ``record`` breaks chapter ``chapter``'s declaration, as sentences (empty: it
    keeps the contract).

    Args:
        chapter: the chapter whose declaration ``record`` must keep.
        record: the chapter's results, as it would be saved.

    Returns:
        One sentence per problem (a missing or ill-kinded key); empty when there is none.
    """
    spec = _declared(chapter)
    problems = [f"chapter {spec.chapter}'s results lack {key!r} (declared: {kind})"
                for key, kind in spec.keys.items() if key not in record]
    for key, kind in {**spec.keys, **spec.optional}.items():
        if key in record and not _kind_ok(record[key], kind):
            problems.append(f"chapter {spec.chapter}'s {key!r} is a {type(record[key]).__name__}, "
                            f"declared {kind}")
    return problems


def _relative(value):
    """A path, or a mapping of name -> path, as the repository-relative text it is stored as.
    A path that is already relative is kept as it is (it may be relative to the data folder,
    as ``Settings.as_dict`` writes it, not to the working directory)."""
    if isinstance(value, dict):
        return {k: _relative(v) for k, v in value.items()}
    if value is None:
        return None
    if not Path(value).expanduser().is_absolute():
        return Path(value).as_posix()
    return config.relative_to_root(value)


def _with_relative_paths(record: dict, paths: tuple) -> dict:
    """``record`` with its declared path fields, and any :class:`~pathlib.Path` value anywhere,
    written relative to the repository."""
    def walk(value):
        if isinstance(value, Path):
            return _relative(value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    out = walk(dict(record))
    for dotted in paths:
        *parents, last = dotted.split(".")
        holder = out
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and last in holder:
            holder[last] = _relative(holder[last])
    return out


def save(chapter: str, record: dict, folder: str | os.PathLike | None = None,
         quiet: bool = False) -> Path:
    """Check ``record`` against chapter ``chapter``'s declaration and write it as JSON.

    Paths are written relative to the repository (:func:`config.relative_to_root`); numpy
    numbers become floats. Raises ValueError, naming every missing or ill-kinded key, before
    anything is written, so a broken record never replaces a good one. Then says what it
    wrote: "wrote results/ch02.json (quick mode, 150 s)".

    Args:
        chapter: the chapter's number as a string ("02").
        record: the chapter's results (keys as declared in ``RECORDS``).
        folder: where to write (default :func:`config.results_dir`).
        quiet: do not print the line.

    Returns:
        The file written (see :func:`path_of`).
    """
    spec = _declared(chapter)
    problems = check(spec.chapter, record)
    if problems:
        raise ValueError("the record breaks the results contract (llmrec_lib/results.py::RECORDS):\n  "
                         + "\n  ".join(problems))
    path = path_of(spec.chapter, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_with_relative_paths(record, spec.paths), indent=2, default=float))
    if not quiet:
        how = [f"{record['mode']} mode"] if "mode" in record else []
        how += [f"{record['chapter_seconds']:.0f} s"] if "chapter_seconds" in record else []
        print(f"wrote {config.relative_to_root(path)}" + (f" ({', '.join(how)})" if how else ""))
    return path


def load(chapter: str, *keys: str, folder: str | os.PathLike | None = None,
         missing_ok: bool = False) -> dict | None:
    """Chapter ``chapter``'s record, after checking it holds ``keys``.

    Args:
        chapter: "02", "09", ...
        *keys: the keys the caller reads; each must be there (None values are fine: a chapter
            records None for what it could not produce on this data).
        folder: where to read (default :func:`config.results_dir`).
        missing_ok: return None when the file is absent (a chapter that did not run on this
            data) instead of raising.

    Returns:
        The record as a dict; None when it is missing and ``missing_ok``.

    Raises:
        ResultsError: the file is missing, or lacks one of ``keys``; the message names the
            chapter to run.
    """
    spec = _declared(chapter)
    path = path_of(spec.chapter, folder)
    shown = config.relative_to_root(path)
    if not path.is_file():
        if missing_ok:
            return None
        raise ResultsError(f"{shown} is missing: run chapter {spec.chapter} ({spec.notebook}) first, "
                           "on the same data and in the same mode (make test runs every chapter in order)")
    record = json.loads(path.read_text())
    absent = [k for k in keys if k not in record]
    if absent:
        raise ResultsError(f"{shown} has no {', '.join(map(repr, absent))}: it was written by an older "
                           f"chapter {spec.chapter}; run chapter {spec.chapter} ({spec.notebook}) again")
    return record


def _chapter_rows(chapter: str, record: dict, metric: str, stage: str) -> list[dict]:
    """One row per system of a chapter's record: chapter 02's ``table`` (one row per system,
    stage and metric), or a ``summary`` (system -> metric -> mean, lo, hi) of the test stage."""
    if "table" in record and chapter == "02":
        return [{"system": r["system"], "chapter": chapter, "mean": r["mean"], "lo": r["lo"],
                 "hi": r["hi"]} for r in record["table"]
                if r["stage"] == stage and r["metric"] == metric]
    if stage != "test":
        raise ValueError(f"chapter {chapter}'s summary holds the test stage only, not {stage!r}")
    return [{"system": name, "chapter": chapter, **{k: s[metric][k] for k in ("mean", "lo", "hi")}}
            for name, s in (record.get("summary") or {}).items() if metric in s]


def leaderboard(metric: str = "recall@50", chapters=("02",), rows=(), *, stage: str = "test",
                folder: str | os.PathLike | None = None, required=("02",)):
    """Every system's ``metric`` with its 95% interval, best first, across chapters.

    Args:
        metric: a metric every record reports, e.g. "recall@50".
        chapters: the chapters whose records join the board: chapter 02's table of baselines,
            and any chapter with a ``summary`` (chapter 03's).
        rows: this chapter's own systems, dicts with system, chapter, mean, lo, hi (they come
            first, so a tie keeps them above an earlier chapter's system).
        stage: "test" (or "valid" for chapter 02's table).
        folder: where the records are (default :func:`config.results_dir`).
        required: chapters whose record must exist; the others join when they ran here.

    Returns:
        A DataFrame with columns system, chapter, mean, lo, hi, sorted by mean (descending).
    """
    import pandas as pd

    board = [dict(r) for r in rows]
    for ch in chapters:
        record = load(ch, folder=folder, missing_ok=ch not in required)
        if record is not None:
            board += _chapter_rows(_declared(ch).chapter, record, metric, stage)
    frame = pd.DataFrame(board, columns=["system", "chapter", "mean", "lo", "hi"])
    return frame.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
