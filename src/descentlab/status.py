"""How a walk ended: the small integers every engine writes into its status array, and the one
vocabulary every report uses for them (the repr, `summary`, the CLI, the explorer, `lr_sweep`).

A walk ends in one of five outcomes:

- **converged**: its gradient norm fell below the tolerance (by default `auto_tol`: a walk that
  reached a minimum is converged, whatever the function's scale); it stopped there.
- **step limit**: it took every step it was given and is still moving.
- **diverging**: it took every step, but f is a thousand times or more farther from f* than at
  its start (`DIVERGING_GROWTH`): a learning rate too high, caught before the blow-up bound.
- **diverged**: its value or gradient stopped being finite, or it left the blow-up box; it was
  held at its last finite position.
- **interrupted**: Ctrl-C stopped the run.

"Reached a minimum" is a separate question, about where a walk ended: within a distance of one
of the function's known minima (`Trajectory.reached`).
"""

import math

STATUS = ("step limit", "converged", "diverged", "interrupted")
RUNNING, CONVERGED, DIVERGED, INTERRUPTED = range(4)  # (RUNNING: during the run; after it,
# the walks that are still running ran to the step limit)

# every outcome, in the order reports list them
OUTCOMES = ("converged", "step limit", "diverging", "diverged", "interrupted")

# A walk at the step limit whose distance to f* grew this many times over is "diverging"
DIVERGING_GROWTH = 1e3


def outcome(code: int, diverging: bool = False) -> str:
    """The outcome word of a status code (a step-limit walk that is `diverging` says so)."""
    return "diverging" if code == RUNNING and diverging else STATUS[code]


def auto_tol(gradient_scale: float, eps: float, tiny: float) -> float:
    """The default tolerance: a walk converges once its gradient norm is below 100·eps (eps:
    the dtype's machine epsilon; 1.2e-5 in float32, 2.2e-14 in float64) times
    `gradient_scale`, the median gradient norm over its starts. Relative, so that f and 1000·f
    converge at the same point; a hundred eps, because near a minimum a computed gradient is
    rounding noise of about eps times its terms (of the order of the start's gradient), and a
    walk there must still be called converged. Never 0: a start at a stationary point
    converges at step 0 (`tiny`: the dtype's smallest normal)."""
    scale = gradient_scale if math.isfinite(gradient_scale) else 0.0
    return max(100 * eps * scale, tiny)
