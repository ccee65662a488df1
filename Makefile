# Quick start:  make run   (set up, index the keras API + guides, serve the local room)
#               make ask   (answer a sample question on the command line)
#               make test  (the whole test suite; what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; GPU machines: see README ("GPU") and set TORCH_SPEC= to skip.
TORCH_SPEC ?= torch==2.13.0
QUESTION ?= How do I stop training when the validation loss stops improving?
DOCS_DIR ?= ../shared/keras-io-docs
# Set DOCS_GIT=https://github.com/keras-team/keras-io to clone (and later pull) the docs instead.
DOCS_GIT ?=
# The guides and examples go into the index whenever there is a source for them.
DOCS_ARGS = $(if $(DOCS_GIT),--docs-git $(DOCS_GIT),$(if $(wildcard $(DOCS_DIR)),--docs-dir $(DOCS_DIR)))
# The Matrix homeserver the integration tests run against; its own venv, so its pins stay apart.
SYNAPSE_VENV ?= .venv-synapse
SYNAPSE_SPEC ?= matrix-synapse

.PHONY: venv synapse run index ask test test-all lint eval bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/pip install --quiet -e '.[keras,dev]'
	touch $@

synapse: $(SYNAPSE_VENV)/.installed

$(SYNAPSE_VENV)/.installed:
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet "$(SYNAPSE_SPEC)"
	touch $@

run: venv
	$(BIN)/supportbot index build $(DOCS_ARGS)
	$(BIN)/supportbot run

ask: venv
	$(BIN)/supportbot ask "$(QUESTION)"

index: venv
	$(BIN)/supportbot index build $(DOCS_ARGS)

test: venv synapse
	$(BIN)/python -m pytest

test-all: venv synapse
	$(BIN)/python -m pytest -m ''

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile; else echo "hadolint not installed (x86_64 only): Dockerfile not linted"; fi

eval: index
	$(BIN)/supportbot eval ../shared/eval/questions-dev.jsonl --mode all

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) data/indexes data/supportbot.db* .pytest_cache .mypy_cache .ruff_cache
