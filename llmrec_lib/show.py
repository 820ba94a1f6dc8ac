"""Show the library's code in the book (issue 15, "show the code").

A chapter that teaches a mechanism shows the function or class that implements it, in a
cell tagged ``hide-output`` so that the rendered book collapses it behind a toggle::

    # %% tags=["hide-output"]
    show.source(losses.InfoNCE)

The output is a Markdown block headed by the object's location in the repository, in the
form the chapters' prose uses (``llmrec_lib/losses.py::InfoNCE``), followed by its source
in a fenced ``python`` block. The location is relative to the repository, never a path on
the machine that ran the chapter.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from llmrec_lib import config

if TYPE_CHECKING:  # IPython comes with the notebook kernel; imported when displaying
    from IPython.display import Markdown

__all__ = ["location", "source", "source_text"]

_INSTALLED = {"site-packages", "dist-packages"}


def _unwrap(obj: object) -> object:
    """The function or class behind ``obj`` (a bound method, property, partial, ...).

    Args:
        obj: what the chapter passed in.

    Returns:
        A class, a function or a method's function.

    Raises:
        TypeError: ``obj`` is neither a class nor a function (an instance, a module, a
            number): there is no one definition to show; or it is a builtin (no source).
    """
    if isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if inspect.ismethod(obj):
        obj = obj.__func__
    obj = inspect.unwrap(obj) if inspect.isfunction(obj) else obj
    if inspect.isroutine(obj) and not inspect.isfunction(obj):
        raise TypeError(f"show.source cannot show {obj!r:.60}: it has no Python source")
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        raise TypeError(
            f"show.source takes a class or a function, not {type(obj).__name__} "
            f"({obj!r:.60}): pass the class (e.g. losses.InfoNCE), not an instance"
        )
    return obj


def location(obj: object) -> str:
    """Where ``obj`` is defined, as ``llmrec_lib/x.py::Name`` (relative to the repository).

    Args:
        obj: a class or function defined in a file of this repository.

    Returns:
        The file relative to the repository root, ``::`` and the qualified name
        (``Class.method`` for a method).

    Raises:
        TypeError: ``obj`` is not a class or a function, or has no source file (a builtin).
        ValueError: ``obj`` is defined outside the repository (another package, a
            notebook cell): no relative location exists.
    """
    obj = _unwrap(obj)
    try:
        path = inspect.getsourcefile(obj)
    except TypeError as err:  # builtins and C extensions
        raise TypeError(
            f"show.source cannot show {obj!r:.60}: it has no Python source file "
            "(a builtin, or a class defined in a notebook cell)"
        ) from err
    if path is None or not Path(path).is_file():
        raise ValueError(
            f"show.source cannot show {obj.__qualname__}: it is not defined in a file "
            "(defined in a notebook cell or generated at run time)"
        )
    root = config.PROJECT_ROOT.resolve()
    resolved = Path(path).resolve()
    parts = resolved.relative_to(root).parts if resolved.is_relative_to(root) else ()
    # a package installed in a virtual environment inside the checkout (.venv) is not ours
    if not parts or _INSTALLED & set(parts):
        raise ValueError(
            f"show.source cannot show {obj.__qualname__}: it is defined outside this "
            f"repository (in module {obj.__module__!r}); only the book's own code is shown"
        )
    return f"{'/'.join(parts)}::{obj.__qualname__}"


def source_text(obj: object) -> str:
    """The Markdown that :func:`source` displays: a location heading and a code block.

    Args:
        obj: a class or function defined in this repository.

    Returns:
        ``**`llmrec_lib/x.py::Name`**`` on the first line, then the dedented source of
        ``obj`` (decorators and docstring included) in a fenced ``python`` block.

    Raises:
        TypeError, ValueError: as :func:`location`; OSError if the source file cannot be
            read.
    """
    where = location(obj)
    code = textwrap.dedent(inspect.getsource(_unwrap(obj))).rstrip()
    fence = "```"
    while fence in code:  # a docstring that holds a fence must not close the block
        fence += "`"
    return f"**`{where}`**\n\n{fence}python\n{code}\n{fence}\n"


def source(obj: object) -> "Markdown":
    """Display ``obj``'s source in a notebook, headed by its location in the repository.

    Args:
        obj: a class or function defined in this repository (a bound method, property,
            ``functools.partial`` or ``staticmethod`` shows the function behind it).

    Returns:
        An IPython ``Markdown`` object: the last expression of a cell renders it, and the
        book renders it as a highlighted code block (collapsed when the cell is tagged
        ``hide-output``).

    Raises:
        TypeError: ``obj`` is not a class or a function, or has no Python source.
        ValueError: ``obj`` is defined outside this repository.
    """
    from IPython.display import Markdown

    return Markdown(source_text(obj))
