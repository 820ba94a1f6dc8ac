"""Build every assignment: a student notebook and an autograder from each master.

A master is a jupytext py:percent file ``assignments/NN_name.py`` written in otter-grader's
assignment format (raw cells ``# BEGIN QUESTION`` / ``# BEGIN SOLUTION`` / ``# BEGIN TESTS``;
a test cell whose first line is ``# HIDDEN`` is a hidden test). For each master this writes::

    OUT/NN_name/student/NN_name.ipynb      hand this out: solutions replaced by ``...``,
                                           public tests only (``grader.check("q1")``)
    OUT/NN_name/autograder/NN_name.ipynb   the reference solutions (keep it)
    OUT/NN_name/autograder/autograder.zip  public + hidden tests: grade with
                                           ``otter run -a autograder.zip submission.ipynb``

Usage (``make assignments`` runs it on every master)::

    python tools/build_assignments.py --out _build/assignments assignments/*.py

Nothing here needs docker or a network: ``otter assign`` only rewrites notebooks, and grading
with ``otter run`` (or ``otter.api.grade_submission``) executes the submission locally, in the
environment it is called from.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jupytext


def build_one(master: Path, out: Path) -> Path:
    """Build one master into ``out/<stem>/{student,autograder}``; return that folder."""
    from otter.assign import main as otter_assign

    master = Path(master).resolve()
    if not master.is_file():
        raise FileNotFoundError(f"no assignment master at {master}")
    name = master.stem
    dest = Path(out).resolve() / name
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(prefix=f"assign-{name}-") as tmp:
        nb = jupytext.read(master)
        nb.metadata.pop("jupytext", None)
        src = Path(tmp) / f"{name}.ipynb"
        jupytext.write(nb, src)
        otter_assign(str(src), str(dest), no_pdfs=True)
    zips = sorted((dest / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise RuntimeError(f"otter assign wrote {len(zips)} autograder zips for {name}, expected 1")
    zips[0].rename(dest / "autograder" / "autograder.zip")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="_build/assignments", help="output folder")
    parser.add_argument("masters", nargs="+", type=Path, help="assignments/NN_name.py files")
    args = parser.parse_args(argv)
    for master in args.masters:
        t0 = time.perf_counter()
        dest = build_one(master, Path(args.out))
        print(f"{master.stem}: student/ and autograder/ in {dest} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
