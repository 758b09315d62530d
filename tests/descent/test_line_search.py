"""L-BFGS's line search made visible: every evaluation of f it asks for is kept, equal to a plain
torch loop's, and the contour picture draws the points it tried."""

import numpy as np
import torch

import descentlab as dl
from descentlab.descent import optimizers
from descentlab.problem.functions import rosenbrock


def plain_lbfgs(start, steps):
    """The loop a user writes, with a closure that notes where f is evaluated."""
    x = torch.tensor(start, dtype=torch.float64).reshape(1, 2).requires_grad_(True)
    kwargs = {**optimizers.REGISTRY["lbfgs"].defaults, "lr": 1.0, "line_search_fn": "strong_wolfe"}
    opt = torch.optim.LBFGS([x], **kwargs)
    seen, path = [], [x.detach().clone()]
    for k in range(steps):

        def closure(k=k):
            opt.zero_grad()
            loss = rosenbrock(x).sum()
            loss.backward()
            seen.append((k, *x.detach().reshape(-1).tolist(), loss.item()))
            return loss

        opt.step(closure)
        path.append(x.detach().clone())
    return seen, torch.cat(path).numpy()


def test_every_evaluation_is_kept_as_a_plain_loop_makes_them():
    run = dl.descend(
        "rosenbrock",
        start=(-1.2, 1.0),
        optimizer="lbfgs",
        line_search_fn="strong_wolfe",
        steps=30,
        dtype="float64",
    )
    seen, path = plain_lbfgs((-1.2, 1.0), 30)
    np.testing.assert_allclose(run.path[:, 0], path, rtol=1e-12, atol=1e-12)
    e = run.evaluations
    assert list(e.columns) == ["step", "point", "x", "y", "value"]
    np.testing.assert_allclose(
        e[["step", "x", "y", "value"]].to_numpy(), np.array(seen), rtol=1e-12
    )
    # the search tried more than one point somewhere, and reached the minimum's valley
    assert e.groupby("step").size().max() >= 3 and run.value < 1e-2
    # each step's first evaluation is where the step starts
    firsts = e.groupby("step").first()[["x", "y"]].to_numpy()
    np.testing.assert_allclose(firsts, run.path[: len(firsts), 0], rtol=1e-12)


def test_other_optimizers_keep_none_and_the_picture_draws_the_tries(tmp_path):
    assert dl.descend("rosenbrock", start=(-1.2, 1.0), steps=5).evaluations.empty
    run = dl.descend(
        "rosenbrock",
        start=[(-1.2, 1.0), (1.5, -0.5)],
        optimizer="lbfgs",
        line_search_fn="strong_wolfe",
        steps=20,
    )
    assert set(run.evaluations["point"]) == {0, 1}
    fig = run.plot()
    ax = fig.axes[0]
    assert "line search: points tried" in ax.get_legend_handles_labels()[1]
    tried = sum(
        len(c.get_offsets())
        for c in ax.collections
        if c.get_label().startswith("line search")
        or c.get_facecolor().tolist() == [[1.0, 1.0, 1.0, 1.0]]
    )
    assert tried >= len(run.evaluations) - run.evaluations.groupby(["step", "point"]).ngroups
