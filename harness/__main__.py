"""`python -m harness` is the same as the `atax` command."""

from harness.cli import main

main()
