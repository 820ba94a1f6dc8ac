"""A pytest plugin: keep the notebooks that nbval executed, outputs included.

nbval runs every cell of a chapter in a kernel and checks that none fails, but throws the
outputs away. The book needs exactly those outputs, so instead of executing every chapter a
second time to render it, this plugin writes each notebook whose cells *all* passed, with the
outputs nbval collected, to ``--nbval-save-dir``. ``tools/stage_book.py`` then renders the book
from them without executing anything.

Usage (the Makefile does this)::

    PYTHONPATH=tools pytest -p nbval_save --nbval-lax --nbval-save-dir _build/executed nb.ipynb

A notebook with a failed, skipped or unrun cell is not written, and an older copy of it is
deleted, so a stale rendering can never stand in for a failing chapter.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import nbformat


def pytest_addoption(parser):
    parser.addoption(
        "--nbval-save-dir",
        default=None,
        help="write each notebook whose cells all passed, with nbval's outputs, to this folder",
    )


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


class _Saver:
    def __init__(self, folder: Path):
        self.folder = folder
        self.bad: set[str] = set()  # notebooks with a cell that failed or was skipped

    def pytest_runtest_logreport(self, report):
        if report.failed or (report.when == "call" and report.skipped):
            self.bad.add(report.nodeid.split("::", 1)[0])

    def pytest_sessionfinish(self, session):
        by_file = defaultdict(list)
        for item in session.items:
            if _is_cell(item):
                by_file[item.parent].append(item)
        self.folder.mkdir(parents=True, exist_ok=True)
        for nb_file, cells in by_file.items():
            out = self.folder / Path(str(nb_file.fspath)).name
            nodeid = nb_file.nodeid
            if nodeid in self.bad or any(c.test_outputs is None for c in cells):
                out.unlink(missing_ok=True)
                continue
            nb = copy.deepcopy(nb_file.nb)
            code = [c for c in nb.cells if c.cell_type == "code"]
            for count, (cell, item) in enumerate(zip(code, cells), start=1):
                outputs = []
                for o in item.test_outputs:
                    o = nbformat.from_dict(dict(o))
                    if o.output_type == "execute_result":
                        o.execution_count = count
                    outputs.append(o)
                cell.outputs = outputs
                cell.execution_count = count
            nbformat.validate(nb)
            nbformat.write(nb, out)


def pytest_configure(config):
    folder = config.getoption("--nbval-save-dir")
    if folder:
        config.pluginmanager.register(_Saver(Path(folder)), "nbval-save-dir")
