"""The optimizer contract over 300 steps, for every class pytorch-optimizer registers: delayed
couplings (AdaShift's after its first 10 steps, AdaNorm's above a threshold) show only in long
runs. The starts, the lone loop and the refusals are test_every_optimizer.py's."""

import pytest
from test_every_optimizer import LONG, LONG_PER_POINT, NAMES, check, proven


@pytest.mark.parametrize("name", NAMES)
def test_every_class_300_steps(name):
    check(name, 300, LONG if proven(name) else LONG_PER_POINT)
