"""Ranking metrics, beyond-accuracy metrics and bootstrap intervals.

Every later chapter is measured with these functions, so each one is short, vectorised and
checked in ``tests/test_metrics.py`` against a plain loop-per-user reference.

Inputs
------
``topk``    int array (n_users, K): each user's recommended column indices, best first.
            ``-1`` marks an empty slot (a system that had fewer than K items to offer); it is
            never a hit and never counts as a recommended item. A real item twice in one row
            is a bug in the system and raises.
``targets`` a sequence of n_users int arrays: each user's relevant column indices (a set: a
            repeated target raises). Order does not matter.

Definitions (binary relevance; ``hits_u@k`` = targets of user u among their first k items)
-----------------------------------------------------------------------------------------
Recall@k          hits_u@k / |T_u|. The standard definition: the share of a user's targets
                  that were retrieved. It cannot reach 1 when |T_u| > k.
RecallCapped@k    hits_u@k / min(k, |T_u|) ([liang2018vae], "VAE-CF"): 1 is reachable for
                  every user. Reported under its own name, never as "recall".
Precision@k       hits_u@k / k.
NDCG@k            DCG / IDCG with DCG = sum_{r<=k} hit_r / log2(r + 1) and IDCG the DCG of a
                  perfect list, which has min(k, |T_u|) hits at the top.
HR@k              1 if hits_u@k > 0 else 0 (hit rate: "did anything relevant show up?").
MRR@k             1 / rank of the first hit within the first k items, 0 if none (a
                  truncated reciprocal rank: the protocol ranks top-K lists, not the whole
                  catalogue, so MRR is always reported "at k").

A user with no targets has no defined accuracy metric: they get NaN, never a silent 0.

Beyond accuracy (``item_counts``: training interactions per catalogue column)
--------------------------------------------------------------------------
coverage@k        share of the catalogue that appears in at least one user's top-k (scalar).
gini@k            Gini index of how often each catalogue item is recommended (scalar; 0 =
                  every item recommended equally often, near 1 = a few items everywhere).
novelty@k         per user, mean self-information -log2 p(i) of the recommended items, with
                  p(i) = (c_i + 1) / (sum_j c_j + n_items): the add-one smoothed share of
                  training interactions, so never-seen items get a finite, highest value.
popularity@k      per user, mean training count of the recommended items ("average
                  recommendation popularity", ARP; [abdollahpouri2019popularity]).
pop_percentile@k  per user, mean popularity percentile of the recommended items in [0, 1]
                  (1 = the most popular item of the catalogue; ties share their mid-rank).
genre_entropy@k   per user, Shannon entropy (bits) of the genre mix of the first k items, each
                  item spreading one unit of weight evenly over its genres (intra-list
                  diversity; 0 = one genre only, log2(n_genres) = every genre equally).

Uncertainty
-----------
:func:`bootstrap_ci` resamples users (percentile bootstrap of the mean);
:func:`paired_bootstrap` resamples users for the difference of two systems evaluated on the
same users, with a two-sided p-value from the centred bootstrap distribution.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = [
    "hit_matrix",
    "recall_at_k",
    "recall_capped_at_k",
    "precision_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "ranking_metrics",
    "coverage",
    "gini_index",
    "self_information",
    "novelty",
    "average_popularity",
    "popularity_percentile",
    "popularity_percentiles",
    "genre_entropy",
    "CI",
    "PairedResult",
    "bootstrap_ci",
    "paired_bootstrap",
    "as_topk",
    "check_bootstrap_args",
]

# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def as_topk(topk) -> np.ndarray:
    """Validate a top-K matrix (see the module docstring) and return it as int64.

    Args:
        topk: (n_users, K) column indices; a 1-D array raises, saying to pass topk[None, :].

    Returns:
        (n_users, K) int64.
    """
    arr = np.asarray(topk)
    if arr.ndim != 2:
        raise ValueError(
            f"topk must be a 2-D array (n_users, K) of column indices, got shape {arr.shape}; "
            "for a single user pass topk[None, :]"
        )
    if arr.size == 0:
        return arr.astype(np.int64).reshape(arr.shape)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"topk must hold integer column indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < -1:
        raise ValueError("topk holds an index below -1; use -1 (only) to mark an empty slot")
    if arr.shape[1] > 1:
        s = np.sort(arr, axis=1)
        dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        if dup.any():
            row = int(np.flatnonzero(dup.any(axis=1))[0])
            raise ValueError(
                f"topk row {row} recommends the same item twice; a top-K list must hold "
                "distinct items (pad with -1 if fewer than K are available)"
            )
    return arr


def _flatten_targets(targets: Sequence, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (n_users,), flat (sum lengths,)) int64 from a sequence of per-user arrays."""
    if len(targets) != n_users:
        raise ValueError(
            f"got {len(targets)} target arrays for {n_users} top-K rows: pass one array of "
            "target column indices per user, in the same order as the rows of topk"
        )
    parts = [np.asarray(t).ravel() for t in targets]
    lengths = np.fromiter((p.size for p in parts), dtype=np.int64, count=n_users)
    if lengths.sum() == 0:
        return lengths, np.zeros(0, dtype=np.int64)
    flat = np.concatenate(parts)
    if flat.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integer column indices, got dtype {flat.dtype}")
    flat = flat.astype(np.int64, copy=False)
    if flat.min() < 0:
        raise ValueError("targets hold a negative column index; targets must be real items")
    return lengths, flat


def _check_k(k: int | None, width: int) -> int:
    if width < 1:
        raise ValueError("topk has no columns: a top-K list needs K >= 1")
    if k is None:
        return width
    k = int(k)
    if not 1 <= k <= width:
        raise ValueError(f"k={k} is outside 1..{width}, the number of columns in topk")
    return k


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, NaN where den == 0 (undefined, not zero)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------------------
# Hits and ranking metrics
# --------------------------------------------------------------------------------------


def hit_matrix(topk, targets: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Which recommended items are targets.

    One vectorised membership test: every (user, item) pair is encoded as the integer
    ``user * M + item``, so no Python loop runs per user.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.

    Returns:
        ``(hits, n_targets)``: ``hits`` bool (n_users, K), ``hits[u, r]`` = topk[u, r] is a
        target of user u; ``n_targets`` int64 (n_users,).
    """
    topk = as_topk(topk)
    n_users, width = topk.shape
    lengths, flat = _flatten_targets(targets, n_users)
    m = int(max(topk.max(initial=-1), flat.max(initial=-1))) + 1
    rows_t = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    keys_t = np.sort(rows_t * m + flat)  # (n_targets_total,)
    if keys_t.size > 1 and (keys_t[1:] == keys_t[:-1]).any():
        user = int(keys_t[1:][keys_t[1:] == keys_t[:-1]][0] // m)
        raise ValueError(f"user row {user} lists the same target twice; targets are sets")
    keys_k = np.arange(n_users, dtype=np.int64)[:, None] * m + topk  # (n_users, K)
    # An empty slot (-1) would encode as the previous user's item m - 1: mask it out.
    hits = np.isin(keys_k, keys_t) & (topk >= 0)
    return hits, lengths


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # (k,) for ranks 1..k


def _recall(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    return _safe_divide(hits[:, :k].sum(axis=1), n_t)


def _recall_capped(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    return _safe_divide(hits[:, :k].sum(axis=1), np.minimum(n_t, k))


def _precision(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    return np.where(n_t > 0, hits[:, :k].sum(axis=1) / k, np.nan)


def _ndcg(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    dcg = hits[:, :k].astype(np.float64) @ disc  # (n_users,)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])  # ideal[j] = DCG of j hits at the top
    idcg = ideal[np.minimum(n_t, k)]
    return _safe_divide(dcg, idcg)


def _hit_rate(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    return np.where(n_t > 0, hits[:, :k].any(axis=1).astype(np.float64), np.nan)


def _mrr(hits: np.ndarray, n_t: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = h.argmax(axis=1)  # rank - 1 of the first hit (0 where there is none)
    rr = np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return np.where(n_t > 0, rr, np.nan)


_RANKING = {
    "recall": _recall,
    "recall_capped": _recall_capped,
    "precision": _precision,
    "ndcg": _ndcg,
    "hr": _hit_rate,
    "mrr": _mrr,
}


def _one(fn, topk, targets, k):
    hits, n_t = hit_matrix(topk, targets)
    return fn(hits, n_t, _check_k(k, hits.shape[1]))


def recall_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user Recall@k = hits in the first k / number of targets.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_recall, topk, targets, k)


def recall_capped_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user hits in the first k / min(k, number of targets): 1 is reachable for all
    [liang2018vae].

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_recall_capped, topk, targets, k)


def precision_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user hits in the first k / k.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_precision, topk, targets, k)


def ndcg_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user binary NDCG@k; the ideal list has min(k, |targets|) hits at the top.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_ndcg, topk, targets, k)


def hit_rate_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user HR@k: 1.0 if any target is in the first k, else 0.0.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_hit_rate, topk, targets, k)


def mrr_at_k(topk, targets: Sequence, k: int | None = None) -> np.ndarray:
    """Per-user reciprocal rank of the first hit within the first k (0.0 if none).

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float, NaN for a user without targets.
    """
    return _one(_mrr, topk, targets, k)


def ranking_metrics(
    topk,
    targets: Sequence,
    ks: Sequence[int] = (10, 50, 100),
    metrics: Sequence[str] = ("recall", "ndcg", "hr", "mrr"),
) -> dict[str, np.ndarray]:
    """Several per-user metrics at several k from one hit matrix.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        targets: per user, the target columns.
        ks: the cut-offs, each at most K.
        metrics: names among ``recall``, ``recall_capped``, ``precision``, ``ndcg``, ``hr``,
            ``mrr``.

    Returns:
        ``{"recall@10": (n_users,) array, ...}``, one entry per metric and k.
    """
    unknown = [m for m in metrics if m not in _RANKING]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(_RANKING)}")
    hits, n_t = hit_matrix(topk, targets)
    out = {}
    for k in ks:
        k = _check_k(k, hits.shape[1])
        for name in metrics:
            out[f"{name}@{k}"] = _RANKING[name](hits, n_t, k)
    return out


# --------------------------------------------------------------------------------------
# Beyond accuracy
# --------------------------------------------------------------------------------------


def _valid_slice(topk, k: int | None, n_items: int | None = None) -> np.ndarray:
    topk = as_topk(topk)
    k = _check_k(k, topk.shape[1]) if topk.shape[1] else 0
    sub = topk[:, :k]
    if n_items is not None and sub.size and sub.max() >= n_items:
        raise ValueError(
            f"topk holds column index {int(sub.max())} but the catalogue has {n_items} items"
        )
    return sub


def coverage(topk, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue's ``n_items`` columns recommended to at least one user.

    Args:
        topk: (n_users, K) column indices; -1 = empty slot.
        n_items: the catalogue's size.
        k: the cut-off (None: K).

    Returns:
        A share in [0, 1].
    """
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    sub = _valid_slice(topk, k, n_items)
    return float(np.unique(sub[sub >= 0]).size / n_items)


def gini_index(topk, n_items: int, k: int | None = None) -> float:
    """Gini index of recommendation counts over the whole catalogue (unrecommended items count
    as 0): 0 when every item is recommended equally often, (n-1)/n when one item takes every
    slot.

    Args:
        topk: (n_users, K) column indices; -1 = empty slot.
        n_items: the catalogue's size.
        k: the cut-off (None: K).

    Returns:
        The index; NaN when nothing is recommended.
    """
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    sub = _valid_slice(topk, k, n_items)
    counts = np.sort(np.bincount(sub[sub >= 0], minlength=n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    i = np.arange(1, n_items + 1, dtype=np.float64)
    return float(((2 * i - n_items - 1) * counts).sum() / (n_items * total))


def _check_counts(item_counts) -> np.ndarray:
    c = np.asarray(item_counts)
    if c.ndim != 1 or c.size == 0:
        raise ValueError("item_counts must be a non-empty 1-D array: one count per catalogue column")
    if c.dtype.kind not in "iuf" or np.isnan(c.astype(np.float64)).any() or (c < 0).any():
        raise ValueError("item_counts must hold non-negative numbers (training interactions)")
    return c.astype(np.float64)


def self_information(item_counts) -> np.ndarray:
    """Each item's self-information -log2 p(i), p(i) = (c_i + 1) / (sum c + n_items).

    Args:
        item_counts: (n_items,) training count per catalogue column.

    Returns:
        (n_items,) bits per item.
    """
    c = _check_counts(item_counts)
    return -np.log2((c + 1.0) / (c.sum() + c.size))


def popularity_percentiles(item_counts) -> np.ndarray:
    """Each item's popularity percentile in [0, 1] (mid-rank for ties; 0.5 if all tie).

    Args:
        item_counts: (n_items,) training count per catalogue column.

    Returns:
        (n_items,) float.
    """
    c = _check_counts(item_counts)
    n = c.size
    if n == 1:
        return np.full(1, 0.5)
    s = np.sort(c)
    below = np.searchsorted(s, c, side="left")
    at_or_below = np.searchsorted(s, c, side="right")
    return (below + (at_or_below - below - 1) / 2.0) / (n - 1)


def _per_user_mean(topk, k: int | None, per_item: np.ndarray) -> np.ndarray:
    """Mean of ``per_item`` over each user's first k real items (NaN if none)."""
    sub = _valid_slice(topk, k, per_item.size)
    valid = sub >= 0
    vals = per_item[np.where(valid, sub, 0)] * valid  # (n_users, k)
    return _safe_divide(vals.sum(axis=1), valid.sum(axis=1))


def novelty(topk, item_counts, k: int | None = None) -> np.ndarray:
    """Per-user mean self-information (bits) of the first k recommended items.

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        item_counts: (n_items,) training count per catalogue column.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float.
    """
    return _per_user_mean(topk, k, self_information(item_counts))


def average_popularity(topk, item_counts, k: int | None = None) -> np.ndarray:
    """Per-user mean training count of the first k recommended items (ARP).

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        item_counts: (n_items,) training count per catalogue column.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float.
    """
    return _per_user_mean(topk, k, _check_counts(item_counts))


def popularity_percentile(topk, item_counts, k: int | None = None) -> np.ndarray:
    """Per-user mean popularity percentile of the first k recommended items (1 = top).

    Args:
        topk: (n_users, K) column indices, best first; -1 = empty slot.
        item_counts: (n_items,) training count per catalogue column.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float.
    """
    return _per_user_mean(topk, k, popularity_percentiles(item_counts))


def genre_entropy(topk, item_genres, k: int | None = None) -> np.ndarray:
    """Per-user intra-list genre entropy (bits) of the first k recommended items.

    Each recommended item spreads one unit of weight evenly over its genres (an item with no
    genre adds nothing); the entropy is that of the resulting genre distribution. A
    multi-genre item is diverse on its own, so a one-item list can have entropy above 0: the
    measure is of the list's genre *mix*.

    Args:
        topk: (n_users, K) column indices; -1 = empty slot.
        item_genres: (n_items, n_genres) 0/1 (or bool) matrix, one row per catalogue column.
        k: the cut-off (None: K).

    Returns:
        (n_users,) float; NaN for a user whose first k items carry no genre at all.
    """
    g = np.asarray(item_genres, dtype=np.float64)
    if g.ndim != 2 or ((g != 0) & (g != 1)).any():
        raise ValueError("item_genres must be a 0/1 matrix (n_items, n_genres)")
    sub = _valid_slice(topk, k, g.shape[0])
    per_item = g / np.maximum(g.sum(axis=1, keepdims=True), 1.0)  # rows sum to 1 (or 0)
    valid = sub >= 0
    mass = (per_item[np.where(valid, sub, 0)] * valid[..., None]).sum(axis=1)  # (n_users, n_genres)
    total = mass.sum(axis=1, keepdims=True)
    p = _safe_divide(mass, np.broadcast_to(total, mass.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    h[total[:, 0] == 0] = np.nan
    return h + 0.0  # no -0.0


# --------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------


class CI(NamedTuple):
    """A mean with its bootstrap interval; unpacks as ``mean, lo, hi``."""

    mean: float
    lo: float
    hi: float


class PairedResult(NamedTuple):
    """Mean of ``a - b`` over users, its bootstrap interval, two-sided p-value, n users."""

    mean_diff: float
    lo: float
    hi: float
    p_value: float
    n: int


def interval_text(mean: float, lo: float, hi: float, signed: bool = False, digits: int = 3) -> str:
    """A value with its interval as the book prints it: ``0.236 [0.215, 0.258]``, or with
    ``signed`` (a difference) ``+0.012 [-0.003, +0.027]``.

    Args:
        mean: the value.
        lo: the interval's lower end.
        hi: the interval's upper end.
        signed: print a sign on every number (for differences).
        digits: decimals.

    Returns:
        The text.
    """
    f = f"{'+' if signed else ''}.{int(digits)}f"
    return f"{mean:{f}} [{lo:{f}}, {hi:{f}}]"


def _clean(values, nan_policy: str, name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if nan_policy not in ("raise", "omit"):
        raise ValueError("nan_policy must be 'raise' or 'omit'")
    bad = ~np.isfinite(v)
    if bad.any():
        if nan_policy == "raise" or np.isinf(v).any():
            raise ValueError(
                f"{name} hold {int(bad.sum())} NaN/inf entries (a metric undefined for some "
                "users?); drop those users first or pass nan_policy='omit'"
            )
        v = v[~bad]
    return v


def check_bootstrap_args(n_boot: int, alpha: float) -> None:
    """Raise ValueError unless the arguments every bootstrap interval here takes (and
    :mod:`llmrec_lib.abtest`'s too) make sense.

    Args:
        n_boot: resamples; at least 1.
        alpha: the interval is at level 1 - alpha; strictly between 0 and 1.
    """
    if int(n_boot) < 1:
        raise ValueError("n_boot must be at least 1")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1), e.g. 0.05 for a 95% interval")


def _bootstrap_means(v: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of ``v`` resampled with replacement.

    Drawn as multiplicity counts (how often each user is picked) so a resample is one
    matrix product; done in chunks so memory stays at a few MB for any number of users.
    """
    n = v.size
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, (1 << 22) // max(n, 1)))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n))  # (c, n) user draws
        offsets = (np.arange(c, dtype=np.int64) * n)[:, None]
        counts = np.bincount((idx + offsets).ravel(), minlength=c * n).reshape(c, n)
        out[start : start + c] = counts @ v / n
    return out


def bootstrap_ci(
    values,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    nan_policy: str = "raise",
) -> CI:
    """Mean of per-user ``values`` and its (1 - alpha) percentile-bootstrap interval.

    Users are the resampling unit: they are the independent draws of an offline test.

    Args:
        values: one number per user.
        n_boot: resamples.
        alpha: the interval is at level 1 - alpha.
        seed: the resampling seed.
        nan_policy: "raise" (a NaN raises) or "omit" (NaNs are left out).

    Returns:
        A :class:`CI`; ``CI(nan, nan, nan)`` for an empty input.
    """
    check_bootstrap_args(n_boot, alpha)
    v = _clean(values, nan_policy)
    if v.size == 0:
        return CI(float("nan"), float("nan"), float("nan"))
    means = _bootstrap_means(v, int(n_boot), seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return CI(float(v.mean()), float(lo), float(hi))


def paired_bootstrap(
    a,
    b,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    nan_policy: str = "raise",
) -> PairedResult:
    """System a minus system b, user by user: mean difference, interval and p-value.

    The interval is the percentile bootstrap of the mean difference; the two-sided p-value
    tests "mean difference = 0" with the centred bootstrap distribution (Efron & Tibshirani
    1993, 16.4): p = (1 + #{|m*_b - m| >= |m|}) / (n_boot + 1), never exactly 0.

    Args:
        a: one number per user under system a.
        b: the same users' numbers under system b, in the same order.
        n_boot: resamples.
        alpha: the interval is at level 1 - alpha.
        seed: the resampling seed.
        nan_policy: "raise", or "omit" to drop a pair with a NaN on either side.

    Returns:
        A :class:`PairedResult`.
    """
    check_bootstrap_args(n_boot, alpha)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(
            f"a and b have {a.size} and {b.size} values; a paired test needs the same users "
            "in the same order on both sides"
        )
    d = _clean(a - b, nan_policy, name="a - b")
    if d.size == 0:
        nan = float("nan")
        return PairedResult(nan, nan, nan, nan, 0)
    means = _bootstrap_means(d, int(n_boot), seed)
    m = float(d.mean())
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    extreme = np.abs(means - m) >= abs(m) - 1e-12 * max(1.0, abs(m))
    p = (1 + int(extreme.sum())) / (int(n_boot) + 1)
    return PairedResult(m, float(lo), float(hi), float(p), int(d.size))
