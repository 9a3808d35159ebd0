"""What the memory estimate is checked against, kept with the benchmarks rather than in the
wheel: published GPU-memory figures with their sources (:mod:`calibration.published`), and each
term of the estimate measured on a real model (:mod:`calibration.terms`). tests/test_memory.py,
tests/test_memory_terms.py and the benchmark scripts import them (pyproject.toml puts
``benchmarks/`` on pytest's path; the scripts run from this folder).
"""
