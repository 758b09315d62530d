"""`python -m descentlab.cli`: the same as the `descentlab` command."""

from .app import main

main()
