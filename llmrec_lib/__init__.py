"""llmrec_lib: the tested helper library behind the llmrec-book chapters.

Each chapter explains an idea and calls the function here that implements it, once.
Modules are imported lazily by the chapters (``from llmrec_lib import data``) so that
importing the package itself stays cheap (no torch, no transformers).
"""

import os as _os

# On a shared 2-core machine, OpenMP threads that spin while waiting made the same torch and
# faiss work 10-40x slower whenever another process ran (measured: SASRec epochs 0.75 s -> 29 s).
# Sleeping waits cost nothing measurable when the machine is idle. Set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
