"""llmrec_lib: the tested helper library behind the llmrec-book chapters.

Each chapter explains an idea and calls the function here that implements it, once.
Modules are imported lazily by the chapters (``from llmrec_lib import data``) so that
importing the package itself stays cheap (no torch, no transformers).
"""

__version__ = "0.1.0"
