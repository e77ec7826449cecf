# Every target sets up what it needs; nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test proto proto-check lint bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## make run: set up, start the whole platform on embedded defaults, run the demo against it.
run: $(STAMP)
	$(BIN)/modelplane up --demo

## make test: set up and run lint, type checks, the import rule and the test suite.
test: $(STAMP) lint
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests loadtests
	$(BIN)/mypy
	$(BIN)/lint-imports

## make proto: regenerate the checked-in code from protos/ with the pinned generators.
proto: $(STAMP)
	$(BIN)/python protos/generate.py src

bench: $(STAMP)
	$(BIN)/python loadtests/predict_vs_bare.py --seconds 20

clean:
	rm -rf $(VENV) build *.egg-info
