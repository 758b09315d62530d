"""The live explorer: one front end (``static/explorer.js``), two hosts — an anywidget in
notebooks (`explore`) and a local ASGI server (`server.serve`, ``descentlab explore``). Both send
the same small JSON requests to `compute.answer`."""

from __future__ import annotations


def explore(*args, **kwargs):
    """`widget.explore`: the explorer in a notebook (imports anywidget only when called)."""
    from .widget import explore as make

    return make(*args, **kwargs)


explore.__doc__ = "The live explorer in a notebook; see `descentlab.explore.widget.explore`."
