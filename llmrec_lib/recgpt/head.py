"""A ranking head for LLM_IT: categories ranked by a trained linear layer, not by written text.

LLM_IT answers in text: six tags, decoded one token at a time, each of which names a category.
HR@K only asks which categories come first. So the model can be read once per prompt instead
(:meth:`generation.LocalGenerator.prompt_states`: its last hidden state, where it would
write the answer's first token), and a softmax layer on that state can be trained for the
ranking itself: to predict the share of each category among the next
:data:`tagger.HORIZON` likes, the same window the tags' targets describe.

A second head of the same form reads only the numbers the prompt's summary lines show
(:func:`count_features`), so a chapter can tell what the LLM's reading adds to them. Both
are multinomial logistic regressions with soft labels and an L2 penalty, fit by L-BFGS from
zeros (deterministic), the penalty chosen on validation (:func:`choose`).

Chapter 07, "A head trained on the ranking"; the states come from
``python -m llmrec_lib.recgpt.tagger states --variant v5 --valid-users 100``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from llmrec_lib import recgpt

__all__ = ["L2_GRID", "TIE_NATS", "Head", "category_shares", "count_features", "fit", "cross_entropy",
           "choose"]

#: the penalties tried, strongest first: the order of preference when validation ties
L2_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
#: how close to the best validation cross-entropy (nats) a stronger penalty may be and win
TIE_NATS = 0.002


def category_shares(item_lists: Sequence[Sequence[int]], itags: pd.Series) -> np.ndarray:
    """Each list's share of items in each category (an item's category: its first tag's), in
    :data:`recgpt.TAG_CATEGORIES` order: the soft labels a head learns, and what HR@K scores.

    Args:
        item_lists: one list of item ids per row (say, the next liked films after a cut).
        itags: item_id -> the item's tag phrases (the first names its category).

    Returns:
        A float array (rows, categories); a row whose items have no category is all zero.
    """
    col = {c: k for k, c in enumerate(recgpt.TAG_CATEGORIES)}
    out = np.zeros((len(item_lists), len(col)))
    for r, items in enumerate(item_lists):
        for i in items:
            tags = itags.get(int(i), ())
            if len(tags):
                out[r, col[recgpt.tag_category(tags[0])]] += 1
    sums = out.sum(1, keepdims=True)
    return np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)


def count_features(liked_lists: Sequence[Sequence[int]], itags: pd.Series, base_rates: pd.Series, *,
                   summary_last: int = 50, recent_last: int = 10, tuned: dict | None = None) -> np.ndarray:
    """The numbers a v5 prompt's summary lines show, as features: per category, its share of
    the last ``summary_last`` likes, of the last ``recent_last``, and of the tuned rule's
    scores (:func:`recgpt.category_scores` at ``tuned``), plus log(1 + the number of likes).

    Args:
        liked_lists: each row's liked item ids, oldest first.
        itags: item_id -> the item's tag phrases.
        base_rates: category -> population share (:func:`recgpt.category_base_rates`).
        summary_last: the likes the first summary line counts.
        recent_last: the likes the second one counts.
        tuned: the tuned rule's knobs (``last``, ``half_life``, ``shrink``).

    Returns:
        A float array (rows, 3 x categories + 1).
    """
    if tuned is None:
        raise ValueError("pass the tuned rule's knobs (tagger.TUNED_RULE)")
    cats = recgpt.TAG_CATEGORIES
    rows = []
    for liked in liked_lists:
        parts = []
        for knobs in ({"last": summary_last}, {"last": recent_last}, tuned):
            s = recgpt.category_scores(liked, itags, base_rates, **knobs)
            v = np.array([s.get(c, 0.0) for c in cats])
            parts.append(v / v.sum() if v.sum() > 0 else v)
        rows.append(np.concatenate(parts + [[np.log1p(len(liked))]]))
    return np.asarray(rows)


@dataclass(frozen=True)
class Head:
    """A fitted softmax layer over :data:`recgpt.TAG_CATEGORIES`.

    Attributes:
        mean: the training features' means (features are standardized with these).
        scale: their standard deviations (1 where a feature is constant).
        weight: (features, categories).
        bias: (categories,).
        l2: the penalty it was fit with.
    """

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    l2: float

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Each row's predicted category shares (rows sum to 1)."""
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.weight + self.bias
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def tags(self, x: np.ndarray, n: int = recgpt.N_TAGS) -> list[list[str]]:
        """Each row's ``n`` most probable categories, best first, written as tags (the
        category's name, lower case: :func:`recgpt.tag_category` maps it back)."""
        order = np.argsort(-self.probs(x), axis=1, kind="stable")[:, :n]
        return [[recgpt.TAG_CATEGORIES[k].lower() for k in row] for row in order]


def fit(x: np.ndarray, y: np.ndarray, l2: float, *, max_iter: int = 500) -> Head:
    """Fit a :class:`Head`: minimize the mean cross-entropy of ``y`` (soft labels) under the
    softmax of the standardized features, plus ``l2 / 2`` x the squared weights (the bias is
    not penalized). L-BFGS in float64 from zeros, so the same data give the same head.

    Args:
        x: features (rows, features).
        y: soft labels (rows, categories); rows summing to 0 are left out.
        l2: the penalty (> 0).
        max_iter: L-BFGS iterations at most.

    Returns:
        The fitted :class:`Head`.
    """
    import torch

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or y.shape[1] != len(recgpt.TAG_CATEGORIES):
        raise ValueError(f"need x (rows, features) and y (rows, {len(recgpt.TAG_CATEGORIES)}) with as many rows, "
                         f"got {x.shape} and {y.shape}")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    keep = y.sum(1) > 0
    x, y = x[keep], y[keep] / y[keep].sum(1, keepdims=True)
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    xt, yt = torch.from_numpy((x - mean) / scale), torch.from_numpy(y)
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -(yt * torch.log_softmax(xt @ w + b, 1)).sum(1).mean() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Head(mean, scale, w.detach().numpy(), b.detach().numpy(), float(l2))


def cross_entropy(head: Head, x: np.ndarray, y: np.ndarray) -> float:
    """The mean cross-entropy (nats) of soft labels ``y`` under ``head`` (rows of ``y``
    summing to 0 left out).

    Args:
        head: a fitted :class:`Head`.
        x: features.
        y: soft labels.

    Returns:
        The mean over the kept rows.
    """
    y = np.asarray(y, dtype=np.float64)
    keep = y.sum(1) > 0
    if not keep.any():
        raise ValueError("no row of y has a label")
    p = head.probs(np.asarray(x)[keep])
    y = y[keep] / y[keep].sum(1, keepdims=True)
    return float(-(y * np.log(np.clip(p, 1e-300, None))).sum(1).mean())


def choose(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray, *,
           grid: Sequence[float] = L2_GRID, tol: float = TIE_NATS) -> tuple[Head, pd.DataFrame]:
    """Fit a head for every penalty in ``grid`` and keep the first (strongest) whose validation
    cross-entropy is within ``tol`` nats of the best (:func:`serving.choose_on_validation`).

    Args:
        x_train: training features.
        y_train: training soft labels.
        x_valid: validation features.
        y_valid: validation soft labels (say, each validation user's window).
        grid: penalties, most preferred first.
        tol: the tie tolerance, in nats.

    Returns:
        The chosen head, and the table of every penalty's validation cross-entropy.
    """
    from llmrec_lib import serving

    heads = {l2: fit(x_train, y_train, l2) for l2 in grid}
    chosen, table = serving.choose_on_validation(grid, lambda l2: -cross_entropy(heads[l2], x_valid, y_valid),
                                                 tol=tol)
    table = table.assign(cross_entropy=-table.pop("metric")).rename(columns={"value": "l2"})
    return heads[chosen], table
