# One command each: `make test` and (later) `make demo` set up what they need themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
# The CPU build of torch lies on this machine's disk; installing it first keeps pip from pulling
# a multi-GB CUDA build for the project's `torch>=` requirement.
TORCH ?= torch==2.13.0

.PHONY: install test lint format recipes

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,qlora,eval]"
	touch $@

install: $(STAMP)

test: install lint
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check peftkit tests benchmarks
	$(VENV)/bin/ruff format --check peftkit tests benchmarks

format: install
	$(VENV)/bin/ruff check --fix peftkit tests benchmarks
	$(VENV)/bin/ruff format peftkit tests benchmarks

# Regenerate the built-in recipe files from the recipe classes (a test checks they match).
recipes: install
	$(PY) -c "from pathlib import Path; from peftkit.recipes import BUILTIN, to_yaml; \
	[Path(f'recipes/{n}.yaml').write_text(to_yaml(k())) for n, k in BUILTIN.items()]"
