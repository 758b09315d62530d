"""The defaults every entry point shares, defined once: `descend` and `race` in Python, the
command line, the explorer's page and widget, and every picture's colours."""

STEPS = 200  # the most steps a walk takes (descend, race, the CLI, the explorer)
OPTIMIZERS = ("gd", "momentum", "rmsprop", "adam")  # a race's entrants
START = (-0.4, -0.65)  # the explorer's first start (on Himmelblau, between two basins)

# entrant i's colour in every picture (matplotlib, plotly, the explorer); one walk alone is
# drawn in SINGLE
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
)
SINGLE = "#ff5a36"
