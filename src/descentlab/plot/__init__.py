"""Pictures of descents and fits: static figures (matplotlib), animations (GIF/MP4).

>>> import descentlab as dl
>>> fig = dl.plot.contour(dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100))
"""

from .animate import animate
from .fits import loss, preds
from .interactive import html
from .static import basins, contour, curve, lr_effects, montage, params, slices, surface
from .view3d import has_pyvista, surface3d

__all__ = [
    "animate",
    "basins",
    "contour",
    "curve",
    "has_pyvista",
    "html",
    "loss",
    "lr_effects",
    "montage",
    "params",
    "preds",
    "slices",
    "surface",
    "surface3d",
]
