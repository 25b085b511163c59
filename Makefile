# The two commands of the README:  `make run` (set up and open OCRDesk)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
ARGS   ?=

.PHONY: run test test-unit lint bench test-packaging dist

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# When ARGS open the window, packaging/run_setup.py first installs the system libraries Qt's
# window needs (root with apt-get) or stops with the one command that installs them.
run: $(VENV)/.app
	$(BIN)/python packaging/run_setup.py $(ARGS)
	$(BIN)/ocrdesk $(ARGS)

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Unit and end-to-end tests (e2e: those that start processes, servers or windows; the rule is
# in tests/conftest.py). `make test-unit` runs only the unit tests, in seconds, without lint.
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not packaging" $(PYTEST_ARGS)

test-unit: $(VENV)/.test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not packaging and not e2e" $(PYTEST_ARGS)

# The slow packaging tests: PyInstaller bundle and .deb built, the .deb installed with dpkg -i
# and removed again (needs root and dpkg; about 2.5 minutes). .ci/run runs them after `make test`.
test-packaging: $(VENV)/.test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m packaging $(PYTEST_ARGS)

# Wheel, sdist, PyInstaller bundle and .deb into dist/ (packaging/README.md).
dist:
	packaging/build.sh
