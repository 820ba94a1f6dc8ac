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

Which dimension to serve is a decision taken on noisy per-user metrics, so it needs a rule fixed
before the numbers are seen: :func:`smallest_dim_keeping` picks the smallest dimension whose
metric *keeps at least a share* of the full dimension's, judged by the lower end of a paired
bootstrap interval of the ratio (a dimension must show that it keeps the share; a noisy one
whose interval merely reaches it does not qualify). :func:`nested_prefixes_figure` draws the
nesting to scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["nested_dims", "truncate", "PCAProjection", "svd_vectors", "DimChoice",
           "smallest_dim_keeping", "nested_prefixes_figure"]


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
    """The nested prefix sizes ``full, full/2, full/4, ...`` down to ``full/smallest_fraction``.

    Args:
        full: the full dimension.
        smallest_fraction: the smallest prefix is ``full`` divided by this (a power of two);
            every size must be whole.

    Returns:
        The sizes, largest first.
    """
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
    """The first ``d`` coordinates of each row, re-normalised (a Matryoshka prefix).

    Args:
        vectors: (n, D) array.
        d: the prefix length, at most D.

    Returns:
        (n, d) float32, unit rows.
    """
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
        """Fit the mean and the top ``d`` principal directions of ``vectors`` (n, D)."""
        a = _check(vectors).astype(np.float64)
        if not 1 <= d <= min(a.shape):
            raise ValueError(f"d must be in [1, {min(a.shape)}] for {a.shape[0]} vectors of dim {a.shape[1]}")
        mean = a.mean(axis=0)
        _, s, vt = np.linalg.svd(a - mean, full_matrices=False)
        var = s**2
        return cls(mean.astype(np.float32), vt[:d].astype(np.float32), (var[:d] / var.sum()).astype(np.float32))

    @property
    def dim(self) -> int:
        """The projected dimension d."""
        return self.components.shape[0]

    def transform(self, vectors) -> np.ndarray:
        """Project ``vectors`` (n, D): centred, onto the d directions, re-normalised; (n, d)."""
        a = _check(vectors)
        if a.shape[1] != self.components.shape[1]:
            raise ValueError(f"vectors have dim {a.shape[1]}, the projection was fitted on {self.components.shape[1]}")
        return _normalise((a - self.mean) @ self.components.T)



def svd_vectors(train: pd.DataFrame, history: pd.DataFrame, user_ids, item_ids,
                dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A collaborative embedding fitted in seconds, nested by construction: truncated SVD.

    ``train`` becomes the 0/1 matrix X (training users x ``item_ids``), factored as
    X = U S V^T with the singular values in decreasing order. An item's vector is its row of
    V S (its coordinates along the users' main directions); a user's is the sum of the rows of
    V over the items of their ``history`` (the PureSVD fold-in, Cremonesi et al. 2010), so
    users outside ``train`` are encoded too. Coordinate j carries the j-th singular value, so
    every prefix is the best rank-d fit of X: the nested order Matryoshka training has to
    learn, here for free. Chapter 05 serves it on data where its committed models do not fit.
    An item no training user rated gets the zero vector: it has no direction, so search these
    vectors by inner product (on re-normalised prefixes the same ranking as cosine).

    Args:
        train: columns ``user_id``, ``item_id``; every row counts as one interaction.
        history: the interactions each user in ``user_ids`` is encoded from (same columns).
        user_ids: the users to encode, in output order.
        item_ids: the catalogue, in output order.
        dim: the embedding size.

    Returns:
        ``(users, items)``, float32, shapes ``(len(user_ids), dim)`` and
        ``(len(item_ids), dim)``, not normalised; each direction's sign is fixed (its largest
        item loading positive), so reruns give the same vectors.
    """
    items_index = pd.Index(np.asarray(item_ids))
    train_users = pd.Index(np.unique(np.asarray(train["user_id"])))
    x = np.zeros((len(train_users), len(items_index)), dtype=np.float64)
    cols = items_index.get_indexer(train["item_id"])
    if (cols < 0).any():
        raise ValueError("train holds items that are not in item_ids")
    x[train_users.get_indexer(train["user_id"]), cols] = 1.0
    if not 1 <= dim <= min(x.shape):
        raise ValueError(f"dim must be in [1, {min(x.shape)}] for a {x.shape[0]} x "
                         f"{x.shape[1]} matrix, got {dim}")
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    v = vt[:dim].T  # (n_items, dim), orthonormal columns
    v = v * np.where(v[np.abs(v).argmax(axis=0), np.arange(dim)] < 0, -1.0, 1.0)
    users_index = pd.Index(np.asarray(user_ids))
    h = history[history["user_id"].isin(users_index)]
    rows, hcols = users_index.get_indexer(h["user_id"]), items_index.get_indexer(h["item_id"])
    keep = hcols >= 0  # a history item outside the catalogue adds nothing
    hist = np.zeros((len(users_index), len(items_index)), dtype=np.float64)
    hist[rows[keep], hcols[keep]] = 1.0
    return (hist @ v).astype(np.float32), (v * s[:dim]).astype(np.float32)


@dataclass(frozen=True)
class DimChoice:
    """What :func:`smallest_dim_keeping` chose, with the evidence for every dimension."""

    dim: int  # the chosen dimension
    full: int  # the reference: the largest dimension given
    keep: float  # the share of the reference's mean a dimension must keep
    table: pd.DataFrame  # index dim (descending): mean, share, share lo, share hi, qualifies

    @property
    def fraction(self) -> float:
        """The chosen dimension as a share of the full one (what a Flat index keeps)."""
        return self.dim / self.full


def smallest_dim_keeping(per_user: Mapping[int, np.ndarray], keep: float = 0.95, *, alpha: float = 0.05,
                         n_boot: int = 1000, seed: int = 0) -> DimChoice:
    """The smallest dimension whose mean metric keeps at least ``keep`` of the full one's.

    ``per_user`` maps each dimension to the per-user metric at that dimension (the same users
    in the same order for every dimension); the largest dimension is the reference. For every
    dimension d the share mean(d) / mean(full) gets a (1 - alpha) percentile-bootstrap interval
    with users resampled jointly (:func:`llmrec_lib.abtest.ratio_bootstrap`), and d
    **qualifies when the interval's lower end is at least** ``keep``: the data show, at
    one-sided level alpha / 2, that d keeps the share. The chosen dimension is the smallest
    one that qualifies; the reference always qualifies (its share is exactly 1), so when no
    smaller dimension does, the full dimension is chosen.

    This is deliberately not "the smallest dimension whose loss is not significant": that rule
    rewards noise (the noisier a prefix, the more easily it passes) and can call a small
    prefix lossless while a larger one loses significantly.

    Args:
        per_user: each dimension -> the per-user metric at that dimension (the same users in
            the same order for every dimension); the largest dimension is the reference.
        keep: the share of the reference's mean a dimension must keep.
        alpha: the bootstrap interval is at level 1 - alpha.
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        A :class:`DimChoice`: the chosen dimension and the evidence for every dimension.
    """
    from .abtest import ratio_bootstrap

    if not 0 < keep <= 1:
        raise ValueError(f"keep must be a share in (0, 1], got {keep}")
    if not per_user:
        raise ValueError("per_user is empty: give the per-user metric at each dimension")
    dims = sorted((int(d) for d in per_user), reverse=True)
    if dims[-1] < 1 or len(set(dims)) != len(dims):
        raise ValueError(f"dimensions must be distinct positive integers, got {list(per_user)}")
    values = {int(d): np.asarray(v, dtype=np.float64).ravel() for d, v in per_user.items()}
    full = dims[0]
    n = values[full].size
    if n < 2 or any(v.size != n for v in values.values()):
        raise ValueError("every dimension needs the same users (at least two) in the same order")
    if not values[full].mean() > 0:
        raise ValueError("the full dimension's mean is not positive: no share can be kept")
    rows = []
    for d in dims:
        if d == full:
            share = lo = hi = 1.0
        else:
            rel = ratio_bootstrap(values[d], values[full], n_boot=n_boot, alpha=alpha, seed=seed)
            share, lo, hi = 1 + rel.mean, 1 + rel.lo, 1 + rel.hi
        rows.append({"dim": d, "mean": float(values[d].mean()), "share": share, "share lo": lo,
                     "share hi": hi, "qualifies": bool(lo >= keep)})
    table = pd.DataFrame(rows).set_index("dim")
    chosen = int(table.index[table["qualifies"]].min())
    return DimChoice(dim=chosen, full=full, keep=float(keep), table=table)


def nested_prefixes_figure(dims, weights=None):
    """One Matryoshka embedding drawn to scale [kusupati2022matryoshka].

    A bar of ``max(dims)`` coordinates, and under it one bracket per nested prefix (the first
    d numbers), each re-normalised and scored by its own InfoNCE; the loss is the weighted
    mean of those terms.

    Args:
        dims: the nested prefix sizes.
        weights: one weight per size (None: equal weights).

    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt  # imported here: `import llmrec_lib.compress` stays light

    dims = [int(d) for d in dims]
    if not dims or min(dims) < 1 or len(set(dims)) != len(dims):
        raise ValueError("dims must be distinct positive integers")
    if weights is None:
        weights = [1.0] * len(dims)
    if len(weights) != len(dims):
        raise ValueError("give one weight per dimension")
    dims, weights = zip(*sorted(zip(dims, weights)))  # smallest prefix first, weights along
    full = dims[-1]
    shades = plt.get_cmap("Blues")(np.linspace(0.85, 0.3, len(dims)))
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * len(dims)))
    top = len(dims) + 0.4
    start = 0
    for d, shade in zip(dims, shades):  # coordinates [previous prefix, d) in one shade
        ax.add_patch(plt.Rectangle((start, top), d - start, 0.6, fc=shade, ec="black", lw=0.6))
        start = d
    ax.text(full / 2, top + 0.85, f"one embedding, {full} numbers", ha="center", va="center",
            fontsize=9)
    total = float(sum(weights))
    for row, (d, shade, w) in enumerate(zip(dims, shades, weights)):
        y = len(dims) - 1 - row
        ax.plot([0, d], [y + 0.35] * 2, color=shade, lw=5, solid_capstyle="butt")
        ax.plot([d, d], [y + 0.35, top], color="grey", lw=0.6, ls=":")
        ax.text(full * 1.03, y + 0.35, f"first {d} ({d / full:.0%}) -> normalise -> "
                f"InfoNCE, weight {w / total:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, full * 1.65)
    ax.set_ylim(-0.3, top + 1.1)
    ax.axis("off")
    ax.set_title("Matryoshka: every prefix of the same vector is trained as an embedding; "
                 "the loss is the weighted mean of the prefixes' losses", fontsize=9)
    fig.tight_layout()
    return fig
