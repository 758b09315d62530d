"""Pictures of descents and fits: static figures (matplotlib), animations (a player in a
notebook, GIF or MP4 in a file), 3-D views and interactive pages. Every figure is returned, and
shows in Jupyter when it is a cell's result; no function here picks the user's backend.

>>> import descentlab as dl
>>> fig = dl.plot.contour(dl.descend("himmelblau", start=(-0.4, -0.65), lr=0.01, steps=100))
"""

from ._common import Figure
from .animate import Animation, animate
from .fits import loss, lr_find, preds, schedule
from .interactive import html
from .static import basins, contour, curve, lr_effects, montage, params, slices, surface
from .training import landscape, landscape3d, landscape_animation, sharpness
from .view3d import has_pyvista, surface3d

__all__ = [
    "Animation",
    "Figure",
    "animate",
    "basins",
    "contour",
    "curve",
    "has_pyvista",
    "html",
    "landscape",
    "landscape3d",
    "landscape_animation",
    "loss",
    "lr_effects",
    "lr_find",
    "montage",
    "params",
    "preds",
    "schedule",
    "sharpness",
    "slices",
    "surface",
    "surface3d",
]
