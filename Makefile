# The two commands of the README:  `make run` (set up and open OCRDesk)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run test lint bench test-packaging dist

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.app
	$(BIN)/ocrdesk $(ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not packaging" $(PYTEST_ARGS)

# The slow packaging tests: PyInstaller bundle and .deb built, the .deb installed with dpkg -i
# and removed again (needs root and dpkg; about 2.5 minutes). .ci/run runs them after `make test`.
test-packaging: $(VENV)/.test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m packaging $(PYTEST_ARGS)

# Wheel, sdist, PyInstaller bundle and .deb into dist/ (packaging/README.md).
dist:
	packaging/build.sh
