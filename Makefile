# Quick start:  make run   (set up, build the default index, answer a sample question)
#               make test  (the whole test suite; what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; GPU machines: see README ("GPU") and set TORCH_SPEC= to skip.
TORCH_SPEC ?= torch==2.13.0
QUESTION ?= How do I stop training when the validation loss stops improving?
DOCS_DIR ?= ../shared/keras-io-docs

.PHONY: venv run index ask test test-all lint eval bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/pip install --quiet -e '.[keras,dev]'
	touch $@

run: venv
	$(BIN)/supportbot index build
	$(BIN)/supportbot ask "$(QUESTION)"

index: venv
	$(BIN)/supportbot index build $(if $(wildcard $(DOCS_DIR)),--docs-dir $(DOCS_DIR))

test: venv
	$(BIN)/python -m pytest

test-all: venv
	$(BIN)/python -m pytest -m ''

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

eval: index
	$(BIN)/supportbot eval ../shared/eval/questions-dev.jsonl --mode all

clean:
	rm -rf $(VENV) data/indexes data/supportbot.db* .pytest_cache .mypy_cache .ruff_cache
