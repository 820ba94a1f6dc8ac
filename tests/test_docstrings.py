"""House style (issue 15 part 6): the public API documents itself, in Google style.

A reader who opens a chapter's implementation should learn from its docstring what each
argument means and what comes back, without reading the body. In every module of COVERED:

* every public function, class and method (no leading underscore) has a docstring;
* every public module-level function with parameters names each of them in an ``Args:``
  section (``name: ...`` or ``name (type): ...``), and one that returns a value says what in
  ``Returns:`` (``Yields:`` for a generator). Methods need a docstring only: their
  arguments are mostly the class's own fields, documented once on the class;
* a paper is cited by its key in ``docs/references.bib`` in square brackets
  (``[oord2018cpc]``), the key the book's bibliography page renders; a key that is not
  in the file fails, and so does a bare arXiv id (cite the key; add the entry first).

The check reads the source (ast), so it imports nothing. Every module of the library is in
COVERED (a new one must be added there, :func:`test_every_module_is_covered_or_pending`);
PENDING, empty today, is where a module would wait while its docstrings catch up, and may
only shrink.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "llmrec_lib"
BIB = ROOT / "docs" / "references.bib"

COVERED = [
    "abtest",
    "backbones",
    "baselines",
    "compress",
    "config",
    "data",
    "distributed",
    "encoders",
    "evaluate",
    "generation",
    "index",
    "interactions",
    "losses",
    "metrics",
    "plots",
    "recgpt",
    "recgpt.compression",
    "recgpt.explanations",
    "recgpt.judges",
    "recgpt.pipeline",
    "recgpt.prompts",
    "recgpt.selftrain",
    "recgpt.tagger",
    "recgpt.head",
    "recgpt.tags",
    "recgpt.teacher",
    "recgpt.towers",
    "recgpt.vocabulary",
    "recipes",
    "results",
    "scaling",
    "serving",
    "sft",
    "show",
    "synthetic",
    "text",
    "train",
]
# Modules the rule does not cover yet, to be moved to COVERED once their docstrings follow it.
PENDING: set[str] = set()

# A citation: a bib key in square brackets, lowercase letters and digits with at least one
# digit ([oord2018cpc], [recgptv2]); "[0, 1]", "[n, d]" or "[i]" are not keys.
CITATION = re.compile(r"\[([a-z][a-z0-9]*[0-9][a-z0-9]*)\]")
BARE_ARXIV = re.compile(r"arXiv[: ]*\d{4}\.\d{4,5}", re.IGNORECASE)
SECTION = re.compile(r"^\s*(Args|Arguments|Returns|Yields|Raises|Examples?|Notes?|Attributes):\s*$")


def bib_keys(path: Path = BIB) -> set[str]:
    """The entry keys of a BibTeX file (``@misc{key,`` -> ``key``)."""
    return set(re.findall(r"^@\w+\{([^,\s]+),", path.read_text(), flags=re.MULTILINE))


def _section(doc: str, name: str) -> str | None:
    """The text of the Google-style section ``name`` of ``doc`` (None when there is none)."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"{name}:":
            indent = len(line) - len(line.lstrip())
            body = []
            for after in lines[i + 1 :]:
                stripped = after.strip()
                if stripped and len(after) - len(after.lstrip()) <= indent and SECTION.match(after):
                    break
                body.append(after)
            return "\n".join(body)
    return None


def _parameters(fn: ast.FunctionDef) -> list[str]:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names = [n for n in names if n not in ("self", "cls")]
    names += [f"*{a.vararg.arg}"] if a.vararg else []
    names += [f"**{a.kwarg.arg}"] if a.kwarg else []
    return names


def _own_nodes(fn: ast.FunctionDef):
    """The nodes of ``fn``'s body, not of the functions and classes defined inside it."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _gives_back(fn: ast.FunctionDef) -> str | None:
    """"Yields" for a generator, "Returns" for a function that returns a value, else None."""
    nodes = list(_own_nodes(fn))
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in nodes):
        return "Yields"
    for n in nodes:
        if isinstance(n, ast.Return) and n.value is not None:
            if not (isinstance(n.value, ast.Constant) and n.value.value is None):
                return "Returns"
    return None


def _function_problems(fn: ast.FunctionDef, name: str) -> list[str]:
    doc = ast.get_docstring(fn)
    if not doc:
        return [f"{name}: no docstring"]
    problems = []
    params = _parameters(fn)
    if params:
        args = _section(doc, "Args")
        if args is None:
            problems.append(f"{name}: no Args: section for {params}")
        else:
            missing = [
                p for p in params
                if not re.search(rf"^\s*{re.escape(p)}\b[^:\n]*:", args, flags=re.MULTILINE)
            ]
            if missing:
                problems.append(f"{name}: Args: does not name {missing}")
    gives = _gives_back(fn)
    if gives and _section(doc, gives) is None and _section(doc, "Returns") is None:
        problems.append(f"{name}: returns a value but has no {gives}: section")
    return problems


def _is_setter(fn: ast.FunctionDef) -> bool:
    """A property's setter or deleter: the property's getter holds its docstring."""
    return any(isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter") for d in fn.decorator_list)


def problems(path: Path, module: str | None = None) -> list[str]:
    """Every breach of the rules above in one module's source (named ``module`` in messages;
    default: the file's stem)."""
    module = module or path.stem
    tree = ast.parse(path.read_text())
    out = []
    if not ast.get_docstring(tree):
        out.append(f"{module}: no module docstring")
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name.startswith("_"):
            continue
        name = f"{module}.{node.name}"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += _function_problems(node, name)
        elif isinstance(node, ast.ClassDef):
            if not ast.get_docstring(node):
                out.append(f"{name}: no docstring")
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                    if not ast.get_docstring(sub) and not _is_setter(sub):
                        out.append(f"{name}.{sub.name}: no docstring")
    return out


def citation_problems(path: Path, keys: set[str]) -> list[str]:
    """Citations in any docstring of ``path`` (private ones too) that are not bib keys, and
    bare arXiv ids."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        doc = ast.get_docstring(node) or ""
        where = f"{path.stem}.{getattr(node, 'name', '<module>')}"
        out += [f"{where}: [{k}] is not in docs/references.bib" for k in CITATION.findall(doc) if k not in keys]
        out += [f"{where}: cites {m!r}: cite its docs/references.bib key instead" for m in BARE_ARXIV.findall(doc)]
    return out


def module_path(module: str) -> Path:
    """The source of ``module`` ("metrics", or "recgpt.towers" inside a package)."""
    path = LIBRARY.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_covered_and_pending_are_modules():
    unknown = {m for m in set(COVERED) | PENDING if not module_path(m).is_file()}
    assert not unknown, f"no such module in llmrec_lib: {sorted(unknown)}"
    assert not set(COVERED) & PENDING, "a module is either covered or pending"


def library_modules() -> set[str]:
    """Every module of llmrec_lib by its COVERED name ("metrics", "recgpt", "recgpt.towers"),
    less the package root (it defines no API) and ``__main__`` entry points (they only call
    a documented ``main``)."""
    out = set()
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        name = ".".join(parts).removesuffix("__init__").rstrip(".")
        if name:
            out.add(name)
    return out


def test_every_module_is_covered_or_pending():
    unlisted = sorted(library_modules() - set(COVERED) - PENDING)
    assert not unlisted, (
        f"modules neither in COVERED nor in PENDING: {unlisted}. Document them and add them to "
        "COVERED (a new module starts covered)"
    )


@pytest.mark.parametrize("module", COVERED)
def test_public_api_is_documented(module):
    found = problems(module_path(module), module)
    assert not found, (
        f"{len(found)} gaps in {module}'s public docstrings (Google style: an Args: line per "
        "parameter, Returns: for what comes back):\n" + "\n".join(found)
    )


@pytest.mark.parametrize("module", COVERED)
def test_citations_are_bib_keys(module):
    found = citation_problems(module_path(module), bib_keys())
    assert not found, "\n".join(found)


def test_pending_modules_are_not_yet_documented():
    done = sorted(m for m in PENDING if not problems(module_path(m)))
    assert not done, f"these follow the rule now: move them from PENDING to COVERED: {done}"


def test_the_check_sees_gaps(tmp_path):
    good = '''"""m."""


def f(a, *, b=1, **kw):
    """Do.

    Args:
        a: one.
        b (int): two.
        **kw: the rest.

    Returns:
        a.
    """
    return a


class C:
    """C."""

    def m(self, x):
        """Method."""
        return x
'''
    (tmp_path / "good.py").write_text(good)
    assert problems(tmp_path / "good.py") == []
    bad = good.replace("        b (int): two.\n", "").replace("    Returns:\n        a.\n", "")
    bad = bad.replace('        """Method."""\n', "")
    (tmp_path / "bad.py").write_text(bad)
    assert problems(tmp_path / "bad.py") == [
        "bad.f: Args: does not name ['b']",
        "bad.f: returns a value but has no Returns: section",
        "bad.C.m: no docstring",
    ]
    (tmp_path / "cite.py").write_text('"""See [oord2018cpc], [nokey2020] and arXiv 1807.03748; [0, 1]."""\n')
    assert citation_problems(tmp_path / "cite.py", {"oord2018cpc"}) == [
        "cite.<module>: [nokey2020] is not in docs/references.bib",
        "cite.<module>: cites 'arXiv 1807.03748': cite its docs/references.bib key instead",
    ]


def test_bib_keys_are_read():
    keys = bib_keys()
    assert {"oord2018cpc", "linkedin2025retrieval", "recgptv2"} <= keys
