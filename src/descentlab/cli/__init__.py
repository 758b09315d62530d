"""The `descentlab` command: one module per group of sub-commands (`app`: functions, show,
descend, race, tour; `fit`; `bench`)."""

from .app import app, main

__all__ = ["app", "main"]
