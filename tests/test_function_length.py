"""House style (issue 15): no library function over about 60 lines without a reason.

A long function does several jobs, and a reader who opens it to learn one of them has to read
them all. The functions below are still long; each is listed with why it has not been split.
The list may only shrink: a new long function fails, and so does an entry that is no longer
long (delete it)."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "llmrec_lib"
MAX_LINES = 60

PENDING: dict[str, str] = {}  # module.function: why it is still long (none today)


def _code_lines(fn: ast.FunctionDef) -> int:
    """Lines from the signature to the end, less the docstring (documentation is not length)."""
    n = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
            and isinstance(first.value.value, str):
        n -= first.end_lineno - first.lineno + 1
    return n


def _long_functions(folder: Path = LIBRARY) -> dict[str, int]:
    found = {}
    for path in sorted(folder.rglob("*.py")):  # packages too (llmrec_lib/recgpt/)
        tree = ast.parse(path.read_text())

        def visit(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}.{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        n = _code_lines(child)
                        if n > MAX_LINES:
                            found[name] = n
                    visit(child, name)

        visit(tree, ".".join(path.relative_to(folder).with_suffix("").parts).removesuffix(".__init__"))
    return found


def test_no_new_long_function():
    new = {k: n for k, n in _long_functions().items() if k not in PENDING}
    assert not new, (
        f"functions over {MAX_LINES} lines: {new}. Split them into named steps (see "
        "evaluate.evaluate), or add them to PENDING with the reason"
    )


def test_pending_list_only_shrinks():
    stale = sorted(set(PENDING) - set(_long_functions()))
    assert not stale, f"no longer long, remove from PENDING: {stale}"


def test_the_scan_sees_a_long_method(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_LINES))
    doc = '        """A docstring\n        of two lines."""\n'
    (tmp_path / "m.py").write_text(f"class C:\n    def f(self):\n{doc}{body}\n\n\ndef g():\n    pass\n")
    assert _long_functions(tmp_path) == {"m.C.f": MAX_LINES + 1}
