"""Smaller embeddings: nested Matryoshka prefixes, plain truncation, and PCA projection.

A Matryoshka-trained model (:class:`~llmrec_lib.losses.MatryoshkaLoss`) is trained so that the
first ``d`` coordinates of its vector are a usable embedding on their own. A model trained
without it can still be shrunk after the fact, two ways, which chapter 05 compares:

* **truncation**: keep the first ``d`` coordinates and re-normalise (free, but nothing told the
  model to put information there);
* **PCA**: project onto the ``d`` directions of largest variance of the *item* vectors (fitted
  once on the catalogue, applied to users and items alike), the best linear map in the
  squared-error sense and the usual post-hoc baseline (LinkedIn compares an MLP projection).

Every function returns L2-normalised float32 rows, ready for cosine / inner-product search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["nested_dims", "truncate", "PCAProjection"]


def _check(x, what: str = "vectors") -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty (n, d) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} hold NaN or inf values")
    return a


def _normalise(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def nested_dims(full: int, smallest_fraction: int = 16) -> list[int]:
    """``full, full/2, full/4, ...`` down to ``full/smallest_fraction`` (each must be whole)."""
    if full < 1 or smallest_fraction < 1 or smallest_fraction & (smallest_fraction - 1):
        raise ValueError("full must be >= 1 and smallest_fraction a power of two")
    if full % smallest_fraction:
        raise ValueError(f"{full} is not divisible by {smallest_fraction}: pick dims by hand")
    out, d = [], full
    while d >= full // smallest_fraction:
        out.append(d)
        d //= 2
    return out


def truncate(vectors, d: int) -> np.ndarray:
    """The first ``d`` coordinates of each row, re-normalised (a Matryoshka prefix)."""
    a = _check(vectors)
    if not 1 <= d <= a.shape[1]:
        raise ValueError(f"d must be in [1, {a.shape[1]}], got {d}")
    return _normalise(a[:, :d])


@dataclass
class PCAProjection:
    """Centre on the fitted mean, project onto the top ``d`` principal directions, normalise."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (d, D), rows orthonormal, largest variance first
    explained: np.ndarray  # (d,) share of total variance per component

    @classmethod
    def fit(cls, vectors, d: int) -> "PCAProjection":
        a = _check(vectors).astype(np.float64)
        if not 1 <= d <= min(a.shape):
            raise ValueError(f"d must be in [1, {min(a.shape)}] for {a.shape[0]} vectors of dim {a.shape[1]}")
        mean = a.mean(axis=0)
        _, s, vt = np.linalg.svd(a - mean, full_matrices=False)
        var = s**2
        return cls(mean.astype(np.float32), vt[:d].astype(np.float32), (var[:d] / var.sum()).astype(np.float32))

    @property
    def dim(self) -> int:
        return self.components.shape[0]

    def transform(self, vectors) -> np.ndarray:
        a = _check(vectors)
        if a.shape[1] != self.components.shape[1]:
            raise ValueError(f"vectors have dim {a.shape[1]}, the projection was fitted on {self.components.shape[1]}")
        return _normalise((a - self.mean) @ self.components.T)

