"""How a point's descent ended, as the small integers every engine writes into its status
array, and their names."""

STATUS = ("running", "converged", "diverged", "interrupted")
RUNNING, CONVERGED, DIVERGED, INTERRUPTED = range(4)

# A point still running whose distance to f* grew this many times over is "diverging" (a
# learning rate too high, before the blow-up bound calls it diverged).
DIVERGING_GROWTH = 1e3
