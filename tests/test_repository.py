"""What the repository itself holds: no file a reader clones may depend on the author's machine."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from llmrec_lib import config

ROOT = Path(__file__).resolve().parents[1]
# An absolute path on someone's machine (under /work, /tmp, /home, /root or /Users) that opens a
# quoted string or JSON value, or follows "=" in a shell usage line (LLMREC_DATA_DIR=...).
MACHINE_PATH = re.compile(r"""["'=]/(work|tmp|home|root|Users)/""")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git): nothing tracked to scan")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or name.endswith(".ipynb") or not path.is_file():  # deleted, not yet committed
            continue
        files.append(path)
    return files


def _machine_paths(path: Path) -> list[str]:
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return []  # binary (weights, arrays, images)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    rel = path.relative_to(ROOT).as_posix()
    return [f"{rel}:{i}: {line.strip()[:120]}" for i, line in enumerate(text.splitlines(), 1)
            if MACHINE_PATH.search(line)]


def test_no_tracked_file_holds_an_absolute_machine_path():
    hits = [hit for path in _tracked_text_files() for hit in _machine_paths(path)]
    assert not hits, (
        "absolute machine paths in tracked files (write them relative to the repository, e.g. "
        "with config.relative_to_root, or to LLMREC_DATA_DIR):\n" + "\n".join(hits)
    )


def test_the_scan_sees_what_it_must():
    home, work = "/" + "home/me/ml", "/" + "work/shared/data/ml-latest-small"  # split: this file is scanned too
    assert MACHINE_PATH.search(f'"data_dir": "{work}"') and MACHINE_PATH.search(f"x = '{work}'")
    assert MACHINE_PATH.search(f"LLMREC_DATA_DIR={home} .venv/bin/python x.py")
    assert not MACHINE_PATH.search('"data_dir": "ml-latest-small"')
    assert not MACHINE_PATH.search("LLMREC_DATA_DIR=../shared/data/ml-latest-small")


def test_relative_to_root_never_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "data" / "ml-latest-small"))
    root = tmp_path / "repo"
    assert config.relative_to_root(root / "results" / "full", root) == "results/full"
    assert config.relative_to_root(root, root) == "."
    assert config.relative_to_root(tmp_path / "data" / "ml-latest-small", root) == "ml-latest-small"
    assert config.relative_to_root(tmp_path / "data" / "ml-latest-small" / "tags.csv", root) == "ml-latest-small/tags.csv"
    assert config.relative_to_root(tmp_path / "elsewhere" / "x.npz", root) == "../elsewhere/x.npz"
    assert config.relative_to_root(config.PROJECT_ROOT / "artifacts") == "artifacts"


def test_command_line_is_pasteable():
    assert config.command_line("llmrec_lib.tagger", ["full", "--valid-users", "100"]) == (
        "python -m llmrec_lib.tagger full --valid-users 100")
    assert config.command_line("m", ["a b"]) == "python -m m 'a b'"


def test_settings_record_the_data_folder_by_name(tmp_path, monkeypatch):
    """Chapters write cfg.as_dict() into results/full/*.json: the data folder goes in by name."""
    folder = tmp_path / "ml-latest-small"
    monkeypatch.setenv("LLMREC_DATA_DIR", str(folder))
    s = config.Settings(chapter="02", mode="full", seed=0, device="cpu", data_dir=folder, backbone="b")
    assert s.as_dict()["data_dir"] == "ml-latest-small"


# --------------------------------------------------------------------------------------------
# No private names across modules (issue 15): a module's `_name` is its own business. Another
# library module, a chapter, an assignment or a benchmark that needs it asks for a public name.
# --------------------------------------------------------------------------------------------

LIBRARY = ROOT / "llmrec_lib"
def _module_name(path: Path) -> str:
    """``recgpt.tagger`` for llmrec_lib/recgpt/tagger.py, ``recgpt`` for its ``__init__.py``."""
    return ".".join(path.relative_to(LIBRARY).with_suffix("").parts).removesuffix(".__init__")


LIB_MODULES = frozenset(_module_name(p) for p in LIBRARY.rglob("*.py") if p.stem != "__init__" or p.parent != LIBRARY)
# namedtuple's public API is spelled with one underscore so that it cannot clash with a field
NAMEDTUPLE_API = frozenset({"_asdict", "_replace", "_fields", "_field_defaults", "_make"})
# Known uses whose callee lives in a module being reworked elsewhere (issue 15): (file, use).
# Delete an entry when its callee gets a public name; add none.
PENDING: frozenset = frozenset()  # empty since data.require_columns became public


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def _private_definitions(tree: ast.AST) -> set[str]:
    """The private names a source defines: functions and classes (at any depth), module- and
    class-level assignments (dataclass fields included) and attributes it assigns
    (``self._x = ...``)."""
    names = {n.name for n in ast.walk(tree)
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    for body in [tree.body] + [c.body for c in ast.walk(tree) if isinstance(c, ast.ClassDef)]:
        for stmt in body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                [stmt.target] if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) else [])
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return {n for n in names if _is_private(n)}


def _library_module(module: str | None, level: int, in_library: bool) -> str | None:
    """``llmrec_lib`` (as "") or ``llmrec_lib.x`` (as "x") for an import's module, else None."""
    if level == 1 and in_library:
        return module or ""
    if level == 0 and module is not None and (module == "llmrec_lib" or module.startswith("llmrec_lib.")):
        return module.removeprefix("llmrec_lib").lstrip(".")
    return None


def _cross_module_private_uses(source: str, name: str, in_library: bool,
                               defined_elsewhere: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, use) for every private name of another library module that ``source`` reaches:
    ``from llmrec_lib.x import _y``, ``x._y`` on an imported library module, and ``obj._y``
    (or ``getattr(obj, "_y")``) where ``_y`` is defined privately in another library module and
    not in this source. ``self._y`` and ``cls._y`` are the class's own (or its base's) business."""
    tree = ast.parse(source)
    own = _private_definitions(tree)
    others = set().union(*(d for m, d in defined_elsewhere.items() if m != name)) - own - NAMEDTUPLE_API
    aliases: dict[str, str] = {}  # local name -> library module it is bound to ("" = the package)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                mod = _library_module(a.name, 0, in_library)
                if mod is not None:  # `import llmrec_lib.x` binds the package, `... as y` the module
                    aliases[a.asname or "llmrec_lib"] = mod if a.asname else ""
        elif isinstance(node, ast.ImportFrom):
            mod = _library_module(node.module, node.level, in_library)
            if mod is None:
                continue
            for a in node.names:
                if mod == "" and a.name in LIB_MODULES:
                    aliases[a.asname or a.name] = a.name
                elif _is_private(a.name) and mod != name:
                    hits.append((node.lineno, f"from {mod or 'llmrec_lib'} import {a.name}"))

    def module_of(expr: ast.AST) -> str | None:
        if isinstance(expr, ast.Name):
            return aliases.get(expr.id)
        if isinstance(expr, ast.Attribute) and module_of(expr.value) == "" and expr.attr in LIB_MODULES:
            return expr.attr
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            base, attr = node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value)):
            base, attr = node.args[0], node.args[1].value
        else:
            continue
        mod = module_of(base)
        if mod:
            if mod != name:
                hits.append((node.lineno, f"{mod}.{attr}"))
            continue
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            continue
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
            continue
        if attr in others:
            hits.append((node.lineno, f"{ast.unparse(base)}.{attr}"))
    return hits


def _scanned_sources() -> list[Path]:
    files = sorted(LIBRARY.rglob("*.py"))
    for folder, pattern in (("chapters", "*.py"), ("assignments", "*.py"), ("benchmarks", "**/*.py")):
        files += sorted((ROOT / folder).glob(pattern))
    return files


def test_no_private_name_is_used_across_modules():
    library = {_module_name(p): _private_definitions(ast.parse(p.read_text())) for p in sorted(LIBRARY.rglob("*.py"))}
    hits = []
    for path in _scanned_sources():
        rel = path.relative_to(ROOT).as_posix()
        in_library = path.is_relative_to(LIBRARY)
        name = _module_name(path) if in_library else ""
        for line, use in _cross_module_private_uses(path.read_text(), name, in_library, library):
            if (rel, use) not in PENDING:
                hits.append(f"{rel}:{line}: {use}")
    assert not hits, (
        "private names of other modules used (give the callee a public name, or a public "
        "accessor such as a property, in its home module):\n" + "\n".join(hits)
    )


def test_the_private_name_scan_sees_what_it_must():
    defined = {"metrics": {"_check"}, "baselines": {"_sim_t", "_score"}}

    def uses(src: str, name: str = "", in_library: bool = False) -> list[str]:
        return [u for _, u in _cross_module_private_uses(src, name, in_library, defined)]

    assert uses("from llmrec_lib import metrics as M\nM._check(1)") == ["metrics._check"]
    assert uses("import llmrec_lib.metrics as m\nm._anything") == ["metrics._anything"]
    assert uses("import llmrec_lib\nllmrec_lib.metrics._x") == ["metrics._x"]
    assert uses("from . import metrics\nmetrics._check", "abtest", True) == ["metrics._check"]
    assert uses("from llmrec_lib.metrics import _check") == ["from metrics import _check"]
    assert uses("n = knn._sim_t._nnz()") == ["knn._sim_t"]  # torch's own _nnz is not ours
    assert uses("getattr(knn, '_sim_t')") == ["knn._sim_t"]
    assert uses("self.model._score(u)") == ["self.model._score"]
    # legitimate: a module's own privates, a class's own attributes, namedtuples, third parties
    assert uses("def _check(): ...\nx._check()", "abtest", True) == []
    assert uses("from . import metrics\nmetrics._check", "metrics", True) == []
    assert uses("self._score(u); cls._sim_t; super()._score(u)") == []
    assert uses("ci._asdict(); p._replace(lo=0); P._fields") == []
    assert uses("t._version; df._get_numeric_data()") == []


def test_settings_show_no_machine_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "data" / "ml-latest-small"))
    config.settings("00", "quick").show()
    out = capsys.readouterr().out
    assert "data: ml-latest-small (LLMREC_DATA_DIR)" in out and str(tmp_path) not in out


def test_the_artifacts_folder_is_spelled_once():
    """config.artifacts_dir is the one place that names the artifacts folder (issue 15)."""
    spelled = [
        str(path.relative_to(config.PROJECT_ROOT))
        for folder in ("llmrec_lib", "chapters")
        for path in sorted((config.PROJECT_ROOT / folder).glob("*.py"))
        if '/ "artifacts"' in path.read_text() and path.name != "config.py"
    ]
    assert not spelled, f"use config.artifacts_dir() instead of spelling the path in {spelled}"
    assert config.artifacts_dir("recgpt") == config.PROJECT_ROOT / "artifacts" / "recgpt"


def test_committed_vectors_match_their_manifest():
    """artifacts/vectors/ holds exactly the files its manifest lists, float16, of the listed
    shape and SHA-256 (tools/commit_vectors.py writes both; encoders.read_committed reads)."""
    import hashlib
    import json

    import numpy as np

    folder = config.artifacts_dir("vectors")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in folder.glob("*.npy")) == sorted(manifest)
    for name, entry in manifest.items():
        path = folder / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        vectors = np.load(path, mmap_mode="r")
        assert vectors.dtype == np.float16 and list(vectors.shape) == entry["shape"], name
        assert entry["chapter"] in {"02", "03", "05"}, name
