"""``python -m llmrec_lib.recgpt full``: chapter 06's RecGPT run (see ``artifacts/recgpt/README.md``)."""

from llmrec_lib.recgpt.pipeline import main

raise SystemExit(main())
