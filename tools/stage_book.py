"""Lay out the book's sources for rendering from already executed chapters.

``make test`` executes every chapter once (nbval) and keeps the executed notebooks in
``_build/executed`` (``tools/nbval_save.py``). This script copies the book's pages and those
notebooks into ``_build/book-src`` with a configuration that does not execute anything, so
``make book`` renders exactly what the tests ran, and no chapter runs twice.

    python tools/stage_book.py _build/executed _build/book-src

It fails, saying which, if a chapter listed in ``_toc.yml`` has no executed notebook (a chapter
that failed its test is never written there).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Everything the book's pages need besides the chapters (kept in step with _toc.yml).
PAGES = ["index.md", "_toc.yml", "docs"]


def toc_files(toc: dict) -> list[str]:
    out = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return out


def book_config() -> dict:
    """The book's _config.yml as staged: nothing executes (the chapters come executed)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    # the staged chapters are .ipynb files: no jupytext format needed
    config.get("sphinx", {}).get("config", {}).pop("nb_custom_formats", None)
    return config


def write_config(dest: Path) -> Path:
    """Write the staged _config.yml into ``dest`` (also used by tests/test_book_render.py)."""
    path = dest / "_config.yml"
    path.write_text(yaml.safe_dump(book_config(), sort_keys=False))
    return path


def stage(executed: Path, dest: Path) -> list[str]:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in PAGES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)
    write_config(dest)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    missing, staged = [], []
    for entry in toc_files(toc):
        if not entry.startswith("chapters/"):
            continue
        nb = executed / f"{Path(entry).name}.ipynb"
        if not nb.exists():
            missing.append(entry)
            continue
        (dest / "chapters").mkdir(exist_ok=True)
        shutil.copy2(nb, dest / f"{entry}.ipynb")
        staged.append(entry)
    if missing:
        raise SystemExit(
            f"no executed notebook in {executed} for {', '.join(missing)}: run `make test` "
            "(or `make book`, which executes what is missing); a chapter whose cells fail is "
            "never written there"
        )
    return staged


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tools/stage_book.py EXECUTED_DIR DEST_DIR")
    done = stage(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"staged {len(done)} executed chapters into {sys.argv[2]}")
