"""How many CPU threads a fit uses: few for small models, never more than the idle cores."""

from __future__ import annotations

import contextlib
import os

import torch

SMALL_STEP_FLOPS = 1e8  # below this a step is over before a second thread has paid for itself


def choose_threads(n_params: int, batch: int) -> int:
    """CPU threads for a fit: one for a small model (about 6 flops per parameter and example
    a step below `SMALL_STEP_FLOPS`: the MLP 784-128-10 at batch 64 is 4e7), else torch's
    count less the cores other processes keep busy (the 1-minute load average): threads that
    wait for a busy core slow every step (benchmarks/learner_overhead.py measures both)."""
    if 6 * n_params * batch < SMALL_STEP_FLOPS:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), cores - busy))


@contextlib.contextmanager
def using_threads(n: int):
    """torch's intra-op threads set to `n` for a block, then put back."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
