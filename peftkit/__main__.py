"""``python -m peftkit`` (and ``torchrun -m peftkit``) run the CLI."""

from peftkit.cli import main

main()
