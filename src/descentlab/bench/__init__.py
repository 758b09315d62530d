"""Sweeps of functions x optimizers x rates x seeds under a fair protocol (`sweep`), run here
or on a Dask cluster (`runners`)."""

from .sweep import BenchResult, bench

__all__ = ["BenchResult", "bench"]
