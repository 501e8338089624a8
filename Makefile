# `make run` starts the whole stack; `make test` runs lint and the test suite.
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml is newer than this stamp.
INSTALLED := $(VENV)/.installed

.PHONY: venv run lint format test

venv: $(INSTALLED)

$(BIN)/python:
	python3 -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@

run: venv
	$(BIN)/python devstack.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest -q
