"""How a point's descent ended, as the small integers every engine writes into its status
array, and their names."""

STATUS = ("running", "converged", "diverged", "interrupted")
RUNNING, CONVERGED, DIVERGED, INTERRUPTED = range(4)
