# One-command set-up: `make test` and `make demo` install everything they need on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.mmkd-installed
DOCS_STAMP := $(VENV)/.mmkd-docs-installed
DATA   := data/fashion_mnist/.prepared
# Cores used to compile mmcv's ops.
JOBS   ?= $(shell nproc)

.PHONY: install data test lint demo docs clean help

help:
	@echo "make install  create $(VENV) with the pinned OpenMMLab stack and mmkd (editable)"
	@echo "make data     put Fashion-MNIST into data/fashion_mnist"
	@echo "make test     run the test suite (installs first)"
	@echo "make lint     ruff: pyflakes, pycodestyle, import order (100 columns)"
	@echo "make demo     teacher -> baseline student -> KD student on Fashion-MNIST"
	@echo "make docs     the documentation site into docs/_build/html (Sphinx, warnings are errors)"

install: $(STAMP)

$(STAMP): requirements/torch.txt requirements/build.txt requirements/openmmlab.txt requirements/tests.txt requirements/lint.txt setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/torch.txt
	$(PIP) install -r requirements/build.txt
	$(PIP) install mmengine==0.10.7
	JOBS=$(JOBS) bash tools/install/build_mmcv.sh $(PY)
	$(PIP) install -r requirements/openmmlab.txt -r requirements/tests.txt -r requirements/lint.txt
	$(PIP) install --no-deps --no-build-isolation --use-pep517 -e .
	$(PY) -c "import mmcv.ops, mmpretrain, mmdet, mmseg, mmkd; print('stack ok: mmcv', mmcv.__version__)"
	@touch $@

data: $(DATA)

$(DATA): tools/dataset_converters/prepare_fashion_mnist.py | $(STAMP)
	$(PY) tools/dataset_converters/prepare_fashion_mnist.py --out-dir data/fashion_mnist

# Sphinx and MyST, pinned, into the same venv (the API reference imports mmkd).
$(DOCS_STAMP): requirements/docs.txt | $(STAMP)
	$(PIP) install -r requirements/docs.txt
	@touch $@

# tests/test_docs.py builds the site too.
test: install data $(DOCS_STAMP)
	$(PY) -m pytest tests -q

lint: install
	$(VENV)/bin/ruff check .

demo: install data
	$(PY) tools/demo.py

docs: install $(DOCS_STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf work_dirs .pytest_cache docs/_build docs/methods
