"""The classic optimization test functions, each with its domain and every global minimum.

The registry is data: one `_Spec` per function. `get(name, dim=None)` builds an `Objective`;
d-dimensional functions take `dim` (default 2). Definitions and minima follow the Virtual
Library of Simulation Experiments (Surjanovic & Bingham, https://www.sfu.ca/~ssurjano/) unless
noted; minimizers are given to full float64 precision where a closed form exists or were
polished with Newton's method.

>>> from descentlab import functions
>>> obj = functions.get("himmelblau")
>>> len(obj.minima), obj.minimum_value
(4, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import DescentError, UnknownNameError
from .objective import Objective

Tensor = torch.Tensor
SFU = "https://www.sfu.ca/~ssurjano/"


def _sqrt(s: Tensor) -> Tensor:
    """sqrt with a zero (sub)gradient at 0 instead of inf*0 = nan (Ackley, Drop-Wave, ...)."""
    positive = s > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, s, torch.ones_like(s))), 0.0)


def _xy(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., 0], x[..., 1]


def sphere(x: Tensor) -> Tensor:
    return (x**2).sum(-1)


def himmelblau(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (a**2 + b - 11) ** 2 + (a + b**2 - 7) ** 2


def six_hump_camel(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (4 - 2.1 * a**2 + a**4 / 3) * a**2 + a * b + (-4 + 4 * b**2) * b**2


def easom(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return -torch.cos(a) * torch.cos(b) * torch.exp(-((a - math.pi) ** 2 + (b - math.pi) ** 2))


def rosenbrock(x: Tensor) -> Tensor:
    head, tail = x[..., :-1], x[..., 1:]
    return (100 * (tail - head**2) ** 2 + (1 - head) ** 2).sum(-1)


def rastrigin(x: Tensor) -> Tensor:
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def ackley(x: Tensor) -> Tensor:
    d = x.shape[-1]
    r = _sqrt((x**2).sum(-1) / d)
    c = torch.cos(2 * math.pi * x).sum(-1) / d
    return -20 * torch.exp(-0.2 * r) - torch.exp(c) + 20 + math.e


def beale(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def booth(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2


def matyas(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return 0.26 * (a**2 + b**2) - 0.48 * a * b


def goldstein_price(x: Tensor) -> Tensor:
    a, b = _xy(x)
    p = 1 + (a + b + 1) ** 2 * (19 - 14 * a + 3 * a**2 - 14 * b + 6 * a * b + 3 * b**2)
    q = 30 + (2 * a - 3 * b) ** 2 * (18 - 32 * a + 12 * a**2 + 48 * b - 36 * a * b + 27 * b**2)
    return p * q


def levy(x: Tensor) -> Tensor:
    w = 1 + (x - 1) / 4
    first = torch.sin(math.pi * w[..., 0]) ** 2
    mid = ((w[..., :-1] - 1) ** 2 * (1 + 10 * torch.sin(math.pi * w[..., :-1] + 1) ** 2)).sum(-1)
    last = (w[..., -1] - 1) ** 2 * (1 + torch.sin(2 * math.pi * w[..., -1]) ** 2)
    return first + mid + last


def styblinski_tang(x: Tensor) -> Tensor:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1)


def mccormick(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return torch.sin(a + b) + (a - b) ** 2 - 1.5 * a + 2.5 * b + 1


def three_hump_camel(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return 2 * a**2 - 1.05 * a**4 + a**6 / 6 + a * b + b**2


def griewank(x: Tensor) -> Tensor:
    i = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    return 1 + (x**2).sum(-1) / 4000 - torch.cos(x / torch.sqrt(i)).prod(-1)


def bohachevsky(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (
        a**2 + 2 * b**2 - 0.3 * torch.cos(3 * math.pi * a) - 0.4 * torch.cos(4 * math.pi * b) + 0.7
    )


def zakharov(x: Tensor) -> Tensor:
    i = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    s = (0.5 * i * x).sum(-1)
    return (x**2).sum(-1) + s**2 + s**4


_BRANIN_B, _BRANIN_C, _BRANIN_T = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)


def branin(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return (
        (b - _BRANIN_B * a**2 + _BRANIN_C * a - 6) ** 2 + 10 * (1 - _BRANIN_T) * torch.cos(a) + 10
    )


def cross_in_tray(x: Tensor) -> Tensor:
    # (|sin a sin b| e^u + 1)^0.1 with u up to 100 overflows float32 (e^89 > 3.4e38) almost
    # everywhere on the domain, so compute it as exp(0.1 softplus(log|sin a| + log|sin b| + u)).
    a, b = _xy(x)
    u = torch.abs(100 - _sqrt(a**2 + b**2) / math.pi)
    logs = torch.log(torch.abs(torch.sin(a)).clamp_min(1e-30)) + torch.log(
        torch.abs(torch.sin(b)).clamp_min(1e-30)
    )
    return -0.0001 * torch.exp(0.1 * torch.nn.functional.softplus(logs + u))


def eggholder(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return -(b + 47) * torch.sin(_sqrt(torch.abs(a / 2 + b + 47))) - a * torch.sin(
        _sqrt(torch.abs(a - (b + 47)))
    )


def holder_table(x: Tensor) -> Tensor:
    a, b = _xy(x)
    return -torch.abs(
        torch.sin(a) * torch.cos(b) * torch.exp(torch.abs(1 - _sqrt(a**2 + b**2) / math.pi))
    )


def drop_wave(x: Tensor) -> Tensor:
    r2 = (x**2).sum(-1)
    return -(1 + torch.cos(12 * _sqrt(r2))) / (0.5 * r2 + 2)


_SCHWEFEL_C = 418.98288727243374  # 420.968746...·sin(sqrt(420.968746...)), so f* = 0 exactly


def schwefel(x: Tensor) -> Tensor:
    return _SCHWEFEL_C * x.shape[-1] - (x * torch.sin(_sqrt(torch.abs(x)))).sum(-1)


# the 2-D functions as formula strings (what `descend` and the CLI accept), for `show`
EXPRESSIONS = {
    "himmelblau": "(x**2 + y - 11)**2 + (x + y**2 - 7)**2",
    "six_hump_camel": "(4 - 2.1*x**2 + x**4/3)*x**2 + x*y + (-4 + 4*y**2)*y**2",
    "easom": "-cos(x)*cos(y)*exp(-((x - pi)**2 + (y - pi)**2))",
    "beale": "(1.5 - x + x*y)**2 + (2.25 - x + x*y**2)**2 + (2.625 - x + x*y**3)**2",
    "booth": "(x + 2*y - 7)**2 + (2*x + y - 5)**2",
    "matyas": "0.26*(x**2 + y**2) - 0.48*x*y",
    "goldstein_price": (
        "(1 + (x + y + 1)**2*(19 - 14*x + 3*x**2 - 14*y + 6*x*y + 3*y**2))"
        "*(30 + (2*x - 3*y)**2*(18 - 32*x + 12*x**2 + 48*y - 36*x*y + 27*y**2))"
    ),
    "mccormick": "sin(x + y) + (x - y)**2 - 1.5*x + 2.5*y + 1",
    "three_hump_camel": "2*x**2 - 1.05*x**4 + x**6/6 + x*y + y**2",
    "bohachevsky": "x**2 + 2*y**2 - 0.3*cos(3*pi*x) - 0.4*cos(4*pi*y) + 0.7",
    "branin": "(y - 5.1/(4*pi**2)*x**2 + 5/pi*x - 6)**2 + 10*(1 - 1/(8*pi))*cos(x) + 10",
    "cross_in_tray": "-0.0001*(abs(sin(x)*sin(y)*exp(abs(100 - sqrt(x**2 + y**2)/pi))) + 1)**0.1",
    "eggholder": "-(y + 47)*sin(sqrt(abs(x/2 + y + 47))) - x*sin(sqrt(abs(x - (y + 47))))",
    "holder_table": "-abs(sin(x)*cos(y)*exp(abs(1 - sqrt(x**2 + y**2)/pi)))",
    "drop_wave": "-(1 + cos(12*sqrt(x**2 + y**2)))/(0.5*(x**2 + y**2) + 2)",
}


@dataclass(frozen=True)
class _Spec:
    fn: Callable[[Tensor], Tensor]
    formula: str
    domain: tuple[float, float] | tuple[tuple[float, float], ...]
    minima: Callable[[int], tuple[tuple[float, ...], ...]] | tuple[tuple[float, ...], ...]
    minimum_value: float | Callable[[int], float]
    any_dim: bool = False
    reference: str = SFU
    view: tuple[tuple[float, float], ...] | None = None


def _point(value: float) -> Callable[[int], tuple[tuple[float, ...], ...]]:
    return lambda d: ((value,) * d,)


_CAMEL = (0.08984201310031806, -0.7126564030207396)
_HOLDER = (8.055023475736563, 9.664590019241272)
_CROSS = 1.3494066171539107
_MCCORMICK_X = 0.5 - math.pi / 3

REGISTRY: dict[str, _Spec] = {
    "sphere": _Spec(sphere, "sum(x_i^2)", (-5.12, 5.12), _point(0.0), 0.0, any_dim=True),
    "himmelblau": _Spec(
        himmelblau,
        "(x^2 + y - 11)^2 + (x + y^2 - 7)^2",
        (-5.0, 5.0),
        (
            (3.0, 2.0),
            (-2.805118086952745, 3.131312518250573),
            (-3.779310253377747, -3.283185991286170),
            (3.584428340330492, -1.848126526964404),
        ),
        0.0,
        reference="https://en.wikipedia.org/wiki/Himmelblau%27s_function",
    ),
    "six_hump_camel": _Spec(
        six_hump_camel,
        "(4 - 2.1x^2 + x^4/3)x^2 + xy + (-4 + 4y^2)y^2",
        ((-3.0, 3.0), (-2.0, 2.0)),
        (_CAMEL, (-_CAMEL[0], -_CAMEL[1])),
        -1.0316284534898774,
    ),
    "easom": _Spec(
        easom,
        "-cos(x) cos(y) exp(-((x - pi)^2 + (y - pi)^2))",
        (-100.0, 100.0),
        ((math.pi, math.pi),),
        -1.0,
        view=((math.pi - 5, math.pi + 5), (math.pi - 5, math.pi + 5)),
    ),
    "rosenbrock": _Spec(
        rosenbrock,
        "sum(100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2)",
        (-5.0, 10.0),
        _point(1.0),
        0.0,
        any_dim=True,
    ),
    "rastrigin": _Spec(
        rastrigin,
        "10 d + sum(x_i^2 - 10 cos(2 pi x_i))",
        (-5.12, 5.12),
        _point(0.0),
        0.0,
        any_dim=True,
    ),
    "ackley": _Spec(
        ackley,
        "-20 exp(-0.2 sqrt(mean(x_i^2))) - exp(mean(cos(2 pi x_i))) + 20 + e",
        (-32.768, 32.768),
        _point(0.0),
        0.0,
        any_dim=True,
    ),
    "beale": _Spec(
        beale,
        "(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2",
        (-4.5, 4.5),
        ((3.0, 0.5),),
        0.0,
    ),
    "booth": _Spec(booth, "(x + 2y - 7)^2 + (2x + y - 5)^2", (-10.0, 10.0), ((1.0, 3.0),), 0.0),
    "matyas": _Spec(matyas, "0.26(x^2 + y^2) - 0.48xy", (-10.0, 10.0), ((0.0, 0.0),), 0.0),
    "goldstein_price": _Spec(
        goldstein_price,
        "[1 + (x+y+1)^2 (19 - 14x + 3x^2 - 14y + 6xy + 3y^2)]"
        " [30 + (2x-3y)^2 (18 - 32x + 12x^2 + 48y - 36xy + 27y^2)]",
        (-2.0, 2.0),
        ((0.0, -1.0),),
        3.0,
    ),
    "levy": _Spec(
        levy,
        "sin^2(pi w_1) + sum((w_i - 1)^2 (1 + 10 sin^2(pi w_i + 1)))"
        " + (w_d - 1)^2 (1 + sin^2(2 pi w_d)), w_i = 1 + (x_i - 1)/4",
        (-10.0, 10.0),
        _point(1.0),
        0.0,
        any_dim=True,
    ),
    "styblinski_tang": _Spec(
        styblinski_tang,
        "sum(x_i^4 - 16 x_i^2 + 5 x_i) / 2",
        (-5.0, 5.0),
        _point(-2.903534027771178),
        lambda d: -39.16616570377142 * d,
        any_dim=True,
    ),
    "mccormick": _Spec(
        mccormick,
        "sin(x + y) + (x - y)^2 - 1.5x + 2.5y + 1",
        ((-1.5, 4.0), (-3.0, 4.0)),
        ((_MCCORMICK_X, _MCCORMICK_X - 1),),
        -math.sqrt(3) / 2 + 1 - 1.5 * _MCCORMICK_X + 2.5 * (_MCCORMICK_X - 1) + 1,
    ),
    "three_hump_camel": _Spec(
        three_hump_camel,
        "2x^2 - 1.05x^4 + x^6/6 + xy + y^2",
        (-5.0, 5.0),
        ((0.0, 0.0),),
        0.0,
    ),
    "griewank": _Spec(
        griewank,
        "1 + sum(x_i^2)/4000 - prod(cos(x_i / sqrt(i)))",
        (-600.0, 600.0),
        _point(0.0),
        0.0,
        any_dim=True,
    ),
    "bohachevsky": _Spec(
        bohachevsky,
        "x^2 + 2y^2 - 0.3 cos(3 pi x) - 0.4 cos(4 pi y) + 0.7",
        (-100.0, 100.0),
        ((0.0, 0.0),),
        0.0,
    ),
    "zakharov": _Spec(
        zakharov,
        "sum(x_i^2) + (sum(0.5 i x_i))^2 + (sum(0.5 i x_i))^4",
        (-5.0, 10.0),
        _point(0.0),
        0.0,
        any_dim=True,
    ),
    "branin": _Spec(
        branin,
        "(y - 5.1/(4 pi^2) x^2 + 5/pi x - 6)^2 + 10 (1 - 1/(8 pi)) cos(x) + 10",
        ((-5.0, 10.0), (0.0, 15.0)),
        ((-math.pi, 12.275), (math.pi, 2.275), (3 * math.pi, 2.475)),
        5 / (4 * math.pi),
    ),
    "cross_in_tray": _Spec(
        cross_in_tray,
        "-0.0001 (|sin(x) sin(y) exp(|100 - sqrt(x^2 + y^2)/pi|)| + 1)^0.1",
        (-10.0, 10.0),
        tuple((sx * _CROSS, sy * _CROSS) for sx in (1, -1) for sy in (1, -1)),
        -2.062611870822738,
    ),
    "eggholder": _Spec(
        eggholder,
        "-(y + 47) sin(sqrt|x/2 + y + 47|) - x sin(sqrt|x - (y + 47)|)",
        (-512.0, 512.0),
        ((512.0, 404.2318051137578),),
        -959.6406627208507,
    ),
    "holder_table": _Spec(
        holder_table,
        "-|sin(x) cos(y) exp(|1 - sqrt(x^2 + y^2)/pi|)|",
        (-10.0, 10.0),
        tuple((sx * _HOLDER[0], sy * _HOLDER[1]) for sx in (1, -1) for sy in (1, -1)),
        -19.208502567886732,
    ),
    "drop_wave": _Spec(
        drop_wave,
        "-(1 + cos(12 sqrt(x^2 + y^2))) / (0.5 (x^2 + y^2) + 2)",
        (-5.12, 5.12),
        ((0.0, 0.0),),
        -1.0,
    ),
    "schwefel": _Spec(
        schwefel,
        "418.9829 d - sum(x_i sin(sqrt|x_i|))",
        (-500.0, 500.0),
        _point(420.968746359982),
        0.0,
        any_dim=True,
    ),
}


def names() -> list[str]:
    """Registered function names, in registry order."""
    return list(REGISTRY)


def normalize_name(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def get(name: str, dim: int | None = None) -> Objective:
    """The registered function `name` as an Objective (d-dimensional ones take `dim`, default 2).

    >>> get("rastrigin", dim=5).minima[0]
    (0.0, 0.0, 0.0, 0.0, 0.0)
    """
    key = normalize_name(name)
    spec = REGISTRY.get(key)
    if spec is None:
        raise UnknownNameError("function", name, REGISTRY)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise DescentError(f"dim must be a positive integer, got {dim!r}")
    if spec.any_dim:
        d = 2 if dim is None else dim
        if key in ("rosenbrock", "levy") and d < 2:
            raise DescentError(f"{key} needs dim >= 2, got {d}")
    else:
        if dim not in (None, 2):
            raise DescentError(f"{key} is defined in 2 dimensions only; drop dim={dim}")
        d = 2
    lo_hi = spec.domain
    domain = (lo_hi,) * d if isinstance(lo_hi[0], (int, float)) else lo_hi
    minima = spec.minima(d) if callable(spec.minima) else spec.minima
    fstar = spec.minimum_value(d) if callable(spec.minimum_value) else spec.minimum_value
    return Objective(
        fn=spec.fn,
        dim=d,
        name=key,
        domain=tuple((float(lo), float(hi)) for lo, hi in domain),
        minima=tuple(tuple(float(v) for v in m) for m in minima),
        minimum_value=float(fstar),
        formula=spec.formula,
        reference=spec.reference,
        view=spec.view,
    )
