"""The book's two halves stay apart (issue 15): LinkedIn's modules and the RecGPT package never
import each other; only the shared core sits beneath both.

Chapters 03-05 teach LinkedIn's LLM dual encoder (``encoders``, ``train``, ``losses``,
``recipes``, ``compress``); chapters 06-08 teach RecGPT (the ``llmrec_lib.recgpt`` package).
A reader who opens one half should not have to read the other to follow it, and a change to one
half should not be able to move a number of the other. Both stand on one core (data, text,
metrics, evaluation, generation, ...), which imports neither. Modules that compare or scale the
two halves (chapters 09-10) sit above both and are listed in :data:`ABOVE`.

Every import counts, including those inside functions (the library imports heavy modules
lazily, and a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "llmrec_lib"

#: LinkedIn's half of the book (chapters 03-05).
LINKEDIN = frozenset({"encoders", "train", "losses", "recipes", "compress"})
#: RecGPT's half: the package and its modules (chapters 06-08).
RECGPT = "recgpt"
#: Modules above both halves (they compare or scale them): they may import either.
ABOVE = frozenset({"scaling"})


def module_name(path: Path, folder: Path = LIBRARY) -> str:
    """``recgpt.tagger`` for llmrec_lib/recgpt/tagger.py, ``recgpt`` for its ``__init__.py``."""
    return ".".join(path.relative_to(folder).with_suffix("").parts).removesuffix(".__init__")


def library_imports(source: str, name: str, is_package: bool = False,
                    modules: frozenset[str] = frozenset()) -> set[str]:
    """The library modules a module's source imports, anywhere in the file.

    ``import llmrec_lib.x``, ``from llmrec_lib import x``, ``from llmrec_lib.x import y`` and
    relative imports (``from . import x``, ``from .x import y``) all count; ``modules`` (the
    library's module names) tells a submodule (``from llmrec_lib.recgpt import tagger``) from a
    name defined in a module (``from llmrec_lib.data import Split`` is ``data``).
    """
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("llmrec_lib.") for a in node.names
                      if a.name.startswith("llmrec_lib.")}
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = package.split(".") if package else []
            parts = parts[:len(parts) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        elif node.module == "llmrec_lib" or (node.module or "").startswith("llmrec_lib."):
            base = node.module.removeprefix("llmrec_lib").lstrip(".")
        else:
            continue
        for a in node.names:
            full = f"{base}.{a.name}" if base else a.name
            found.add(full if full in modules or not base else base)
    return found - {"", name}


def import_graph(folder: Path = LIBRARY) -> dict[str, set[str]]:
    paths = sorted(folder.rglob("*.py"))
    modules = frozenset(module_name(p, folder) for p in paths)
    return {module_name(p, folder): library_imports(p.read_text(), module_name(p, folder),
                                                     p.name == "__init__.py", modules)
            for p in paths if module_name(p, folder) != "__init__"}


def half(module: str) -> str:
    if module == RECGPT or module.startswith(RECGPT + "."):
        return "recgpt"
    if module.split(".")[0] in LINKEDIN:
        return "linkedin"
    return "above" if module in ABOVE else "core"


def test_linkedin_modules_do_not_import_recgpt():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if half(d) == "recgpt")
           for m, deps in graph.items() if half(m) == "linkedin"}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, (f"LinkedIn modules import RecGPT code: {bad}. Move the shared piece into the "
                     "core (a module both halves may import), or the caller into ABOVE")


def test_recgpt_does_not_import_linkedin_modules():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if half(d) == "linkedin")
           for m, deps in graph.items() if half(m) == "recgpt"}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, (f"the recgpt package imports LinkedIn modules: {bad}. Move the shared piece "
                     "into the core instead")


def test_the_core_sits_beneath_both_halves():
    """The core imports neither half, so neither half reaches the other through it."""
    graph = import_graph()
    bad = {m: sorted(d for d in deps if half(d) != "core")
           for m, deps in graph.items() if half(m) == "core"}
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, (f"core modules import a half of the book: {bad}. A module that compares "
                     "the halves belongs in ABOVE; one that only serves one half belongs in it")
    assert ABOVE <= set(graph) and LINKEDIN <= set(graph), "a listed module no longer exists"


def test_the_scan_sees_every_kind_of_import():
    modules = frozenset({"data", "text", "recgpt", "recgpt.tagger", "recgpt.vocabulary", "train"})
    src = ("import llmrec_lib.data\n"
           "from llmrec_lib import text\n"
           "from llmrec_lib.recgpt import tagger\n"
           "from llmrec_lib.recgpt.vocabulary import tag_category\n"
           "def f():\n    from llmrec_lib import train as T\n"
           "from . import vocabulary\n"
           "import numpy\n")
    assert library_imports(src, "recgpt.judges", False, modules) == {
        "data", "text", "recgpt.tagger", "recgpt.vocabulary", "train"}
    assert library_imports("from ..data import Split", "recgpt.judges", False, modules) == {"data"}
    assert half("recgpt.towers") == "recgpt" and half("recipes") == "linkedin"
    assert half("evaluate") == "core" and half("scaling") == "above"
