"""What a person sees and does while a descent runs: a progress bar that appears only for runs
longer than a second, Ctrl-C turned into a clean stop, and whether they are in a notebook."""

from __future__ import annotations

import contextlib
import contextvars
import signal
import sys
import threading
import time
from collections.abc import Callable


def in_a_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (JupyterLab, Notebook 7, VS Code), where an object
    that is a cell's result shows itself."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in shell.config


class Progress:
    """A Rich progress bar that appears only after a run has taken a second."""

    def __init__(self, enabled: bool | None, total: int):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.forced = enabled is True
        self.total = total
        self.bar = None
        self.began = time.perf_counter()
        self.last = 0.0

    def __enter__(self):
        return self

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        self.done = done
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
        if self.bar is None:
            if not self.forced and now - self.began < 1.0:
                return
            from rich.console import Console
            from rich.progress import Progress

            console = Console(stderr=True)
            # a terminal redraws the bar and clears it; elsewhere it can only print, so a
            # forced bar stays and shows its final state
            self.bar = Progress(console=console, transient=console.is_terminal)
            self.bar.start()
            self.task = self.bar.add_task("descending", total=self.total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.stop()


# A run in this context stops after its current step once this says so (a server's request
# whose client left, or that a newer request replaced): the same stop as a first Ctrl-C.
stop_requested: contextvars.ContextVar[Callable[[], bool]] = contextvars.ContextVar(
    "stop_requested", default=lambda: False
)


@contextlib.contextmanager
def interrupt_flag():
    """Turn the first Ctrl-C (or `stop_requested`) into a request to stop after the current
    step; a second Ctrl-C interrupts at once. Outside the main thread signals cannot be caught,
    so there only `stop_requested` stops a run."""
    hit = [False]
    asked = stop_requested.get()
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handler(signum, frame):
        if hit[0]:
            raise KeyboardInterrupt
        hit[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit[0] or asked()
    finally:
        signal.signal(signal.SIGINT, previous)
