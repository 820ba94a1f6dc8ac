"""llmrec_lib.show: the book shows the library's code, headed by a relative location."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from llmrec_lib import config, losses, show

LOCATION = re.compile(r"^llmrec_lib/[a-z_]+\.py::[A-Za-z_][\w.]*$")


def test_location_is_relative_to_the_repository():
    where = show.location(losses.InfoNCE)
    assert where == "llmrec_lib/losses.py::InfoNCE"
    assert LOCATION.match(where)
    assert not Path(where.split("::")[0]).is_absolute()
    assert str(config.PROJECT_ROOT) not in show.source_text(losses.InfoNCE)


def test_methods_and_wrappers_name_the_function_behind_them():
    assert (
        show.location(losses.InfoNCE.forward) == "llmrec_lib/losses.py::InfoNCE.forward"
    )
    bound = losses.InfoNCE().forward
    assert show.location(bound) == "llmrec_lib/losses.py::InfoNCE.forward"
    partial = functools.partial(losses.log_q, smoothing=0.5)
    assert show.location(partial) == "llmrec_lib/losses.py::log_q"


def test_source_text_is_a_heading_and_a_python_block():
    text = show.source_text(losses.log_q)
    head, rest = text.split("\n\n", 1)
    assert head == "**`llmrec_lib/losses.py::log_q`**"
    assert rest.startswith("```python\ndef log_q(")
    assert rest.rstrip().endswith("```")
    # the block holds the whole definition, dedented, and compiles
    code = rest.split("\n", 1)[1].rsplit("```", 1)[0]
    compile(code, "log_q", "exec")


def test_a_method_is_dedented():
    text = show.source_text(losses.InfoNCE.forward)
    assert "```python\ndef forward(" in text


def test_source_returns_markdown_that_a_notebook_renders():
    from IPython.display import Markdown

    shown = show.source(losses.InfoNCE)
    assert isinstance(shown, Markdown)
    assert shown.data == show.source_text(losses.InfoNCE)
    assert "class InfoNCE" in shown._repr_markdown_()
    json.dumps(shown._repr_markdown_())  # the notebook stores it as text/markdown


@pytest.mark.parametrize(
    "obj",
    [losses.InfoNCE(), 3, "losses.InfoNCE", losses],
    ids=["instance", "number", "string", "module"],
)
def test_what_is_not_a_class_or_function_fails_clearly(obj):
    with pytest.raises(TypeError, match="class or a function"):
        show.source(obj)


@pytest.mark.parametrize("obj", [len, [].append, torch.matmul])
def test_builtins_fail_clearly(obj):
    with pytest.raises(TypeError, match="no Python source"):
        show.source(obj)


@pytest.mark.parametrize(
    "obj", [json.dumps, pd.read_csv, pd.DataFrame.head, torch.nn.Module]
)
def test_code_outside_the_repository_fails_clearly(obj):
    # the standard library, and packages installed (perhaps in a .venv inside the checkout)
    with pytest.raises(ValueError, match="outside this repository"):
        show.source(obj)


def test_code_not_in_a_file_fails_clearly():
    namespace: dict = {}
    exec("def made_here():\n    return 1\n", namespace)
    with pytest.raises(ValueError, match="not defined in a file"):
        show.source(namespace["made_here"])


def test_a_fence_in_the_source_does_not_close_the_block(tmp_path, monkeypatch):
    # a module inside the (temporary) repository whose docstring holds a fence
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    path = tmp_path / "fenced_mod.py"
    path.write_text(
        'def f():\n    """Example:\n\n    ```\n    f()\n    ```\n    """\n    return 1\n'
    )
    spec = importlib.util.spec_from_file_location("fenced_mod", path)
    mod = importlib.util.module_from_spec(spec)  # loaded without entering sys.modules
    spec.loader.exec_module(mod)
    text = show.source_text(mod.f)
    assert text.startswith("**`fenced_mod.py::f`**")
    assert "````python\n" in text and text.rstrip().endswith("````")


# A chapter names where a mechanism lives as `llmrec_lib/x.py::Name` (or, once the folder
# is clear from the paragraph, `x.py::Name`); every such name must still exist.
NAMED = re.compile(r"`(?:llmrec_lib/)?((?:[a-z_]+/)*[a-z_]+)\.py::([A-Za-z_][\w.]*)`")
CHAPTERS = sorted((config.PROJECT_ROOT / "chapters").glob("[0-9][0-9]_*.py"))


def named_locations(text: str) -> list[tuple[str, str]]:
    return NAMED.findall(text)


def test_named_locations_are_found_in_prose():
    text = "see `llmrec_lib/losses.py::InfoNCE` and `train.py::Trainer.fit`, not `x.py`"
    assert named_locations(text) == [("losses", "InfoNCE"), ("train", "Trainer.fit")]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_location_a_chapter_names_exists(path):
    missing = []
    for module, name in named_locations(path.read_text()):
        try:
            dotted = module.replace("/", ".").removesuffix(".__init__")  # recgpt/tagger, a package
            obj = importlib.import_module(f"llmrec_lib.{dotted}")
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(f"llmrec_lib/{module}.py::{name}")
    assert not missing, (
        f"{path.name} names library code that does not exist (moved or renamed? update "
        "the chapter's prose): " + ", ".join(missing)
    )
