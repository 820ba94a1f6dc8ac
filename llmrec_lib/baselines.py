"""The baselines every LLM chapter must beat (chapter 02).

Four families, from the floor upwards:

* :class:`RandomScorer` -- random scores: the floor any learned model must clear.
* :class:`MostPopular` -- the most popular items, optionally counted in a recent time window.
* :class:`ItemKNN` -- item-to-item cosine similarity over co-occurrence of positives.
* :class:`SASRec` -- an ID-based sequential model in the SASRec style: a causal transformer
  over item-ID sequences, trained on next-item prediction with an in-batch sampled softmax and
  the log-Q correction (the same loss family as LinkedIn's in-batch InfoNCE).

The text baselines of chapter 02 (zero-shot retrieval with a bundled language model,
``ItemMeanRetrieval`` and ``PromptRetrieval``) follow the same life but live with the dual
encoder in :mod:`llmrec_lib.encoders`: they are the trained LLM's retrieval path too.

Every baseline follows the same two-step life, and the split decides what each step sees::

    model = ItemKNN().fit(split.train)            # learn from training ratings only
    system = model.for_stage(split, "valid")      # input = split.history("valid")
    result = evaluate.evaluate(system, evaluate.EvalData.from_split(split, "valid", ml.item_ids))

``fit`` sees ``split.train`` only. ``for_stage(split, "test")`` then reads each user's input
from ``split.history("test")``, which also holds that user's validation window: the model is
not refitted, it only gets to see the newer history (as a deployed model would). A bound
system's ``score(user_ids)`` returns ``(len(user_ids), n_items)`` float32 scores in catalogue
column order (``ml.item_ids``). Scores exclude nothing the user has seen: that is the
evaluation protocol's job. Items a model has never seen in training (cold items) have no ID
embedding and no co-occurrence: such a model says so in ``can_score_items`` (a bool mask over
the catalogue, read by :func:`llmrec_lib.evaluate.evaluate`) and gives them ``-inf``.

Inputs are *positives* (rating >= ``interactions.POSITIVE_MIN``): what a user liked, in time order.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from llmrec_lib import config, data, interactions

__all__ = [
    "Histories",
    "check_catalogue",
    "BoundSystem",
    "RandomScorer",
    "MostPopular",
    "ItemKNN",
    "SASRecConfig",
    "SASRec",
    "SASRecNet",
    "sampled_softmax_loss",
    "evaluate_stages",
    "tidy_table",
    "wide_table",
    "bar_chart",
]

SECONDS_PER_DAY = 86_400


# --------------------------------------------------------------------------------------
# Inputs: training ratings, histories, catalogue columns
# --------------------------------------------------------------------------------------


def _train_frame(train: Any) -> pd.DataFrame:
    """Accept a :class:`data.Split` (use its ``train``) or a ratings DataFrame."""
    frame = getattr(train, "train", train)
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"fit() needs training ratings: a data.Split or split.train (a DataFrame), got "
            f"{type(train).__name__}"
        )
    interactions.require_columns(frame, interactions.RATING_COLUMNS, "ratings", "Pass split.train.")
    return frame


def _columns(item_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    """Catalogue column of each id (``item_ids`` sorted); unknown ids raise, never dropped."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.clip(np.searchsorted(item_ids, ids), 0, len(item_ids) - 1)
    found = item_ids[pos] == ids
    if not found.all():
        bad = np.unique(ids[~found])[:5].tolist()
        raise ValueError(
            f"{int((~found).sum())} {what} rows name items outside the catalogue (e.g. {bad}); "
            "pass item_ids = the full catalogue (ml.item_ids)"
        )
    return pos.astype(np.int64)


def check_catalogue(item_ids) -> np.ndarray:
    """``item_ids`` as the catalogue every score matrix is laid out by: a sorted, unique 1-D
    int64 array (``ml.item_ids``); anything else raises.

    Args:
        item_ids: the catalogue's item ids.

    Returns:
        The ids as an int64 array.
    """
    ids = np.asarray(item_ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError("item_ids must be the 1-D catalogue in column order (ml.item_ids)")
    if (np.diff(ids) <= 0).any():
        raise ValueError("item_ids must be sorted and unique, like ml.item_ids")
    return ids


class Histories:
    """Each user's positives as catalogue columns, oldest first, built once per stage.

    ``ratings`` is what a stage may see as input (``split.history(stage)``); ratings below
    ``interactions.POSITIVE_MIN`` are dropped (:class:`interactions.Sequences`).
    ``last_time[u]`` is the time of the user's latest rating of any kind: "now" for that
    user, the moment a recommendation is asked for. Everything in ``ratings`` is strictly
    before the stage's targets (the split cuts by time), so the history at "now" obeys the
    same tie rule as the training pairs.
    """

    def __init__(self, ratings: pd.DataFrame, item_ids) -> None:
        self.item_ids = check_catalogue(item_ids)
        seqs = interactions.Sequences.from_ratings(ratings, "history ratings",
                                                   "Pass split.history(stage).")
        self._cols = seqs.per_user(_columns(self.item_ids, seqs.item_id, "history"))
        last = ratings.groupby("user_id")["timestamp"].max()
        self.last_time = {int(u): int(t) for u, t in last.items()}

    def __contains__(self, user: int) -> bool:
        return int(user) in self._cols

    def __getitem__(self, user: int) -> np.ndarray:
        """Columns of the user's positives, oldest first (empty if none)."""
        return self._cols.get(int(user), np.zeros(0, dtype=np.int64))

    def require(self, user_ids: np.ndarray, model: str) -> None:
        """Raise if a user has no positive to start from (a personalised model needs one)."""
        empty = [int(u) for u in user_ids if int(u) not in self._cols]
        if empty:
            raise ValueError(
                f"{model}: {len(empty)} user(s) have no positive rating in the input history "
                f"(e.g. {empty[:5]}), so there is nothing to personalise from. Evaluate the "
                "users of split.users(stage) (the split guarantees each has one), or score "
                "these users with MostPopular."
            )

    def matrix(self, user_ids: np.ndarray, n_cols: int | None = None, col_map: np.ndarray | None = None) -> np.ndarray:
        """Binary (len(user_ids), n_cols) float32 matrix of the users' positives.

        ``col_map`` (n_items,) maps catalogue columns to model columns (-1 = unknown to the
        model, left out); without it the columns are the catalogue's.
        """
        n = len(self.item_ids) if n_cols is None else n_cols
        out = np.zeros((len(user_ids), n), dtype=np.float32)
        for row, u in enumerate(user_ids):
            cols = self[u]
            if col_map is not None:
                cols = col_map[cols]
                cols = cols[cols >= 0]
            out[row, cols] = 1.0
        return out

    def mean_vectors(self, user_ids: np.ndarray, vectors: np.ndarray,
                     last: int | None = None, model: str = "the mean of a history") -> np.ndarray:
        """(len(user_ids), dim) float32: each user's L2-normalised mean of ``vectors`` (rows in
        catalogue order) over their positives, the ``last`` most recent only when set.

        A user with no positive raises (:meth:`require`, naming ``model``): there is no mean.
        """
        self.require(user_ids, model)
        out = np.empty((len(user_ids), vectors.shape[1]), dtype=np.float32)
        for row, u in enumerate(user_ids):
            cols = self[u] if last is None else self[u][-last:]
            out[row] = vectors[cols].mean(axis=0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------
# The common shape of a baseline
# --------------------------------------------------------------------------------------


class BoundSystem:
    """A fitted model plus the input histories of one stage: what ``evaluate`` calls.

    ``score(user_ids)`` -> (len(user_ids), n_items) float32; ``can_score_items`` (n_items,)
    bool; ``name``. Made by ``model.bind(history)`` or ``model.for_stage(split, stage)``.
    """

    def __init__(self, model: "Baseline", histories: Histories, name: str | None = None) -> None:
        self.model = model
        self.histories = histories
        self.name = name or model.name

    @property
    def can_score_items(self) -> np.ndarray:
        """(n_items,) bool: the items the model can score (the rest score -inf or a floor)."""
        return self.model.can_score_items

    def user_vectors(self, user_ids) -> np.ndarray:
        """(len(user_ids), dim) user vectors, for models that score by a dot product with
        item vectors (SASRec, the text models): what a vector index is queried with."""
        if not hasattr(self.model, "user_vectors"):
            raise TypeError(f"{type(self.model).__name__} has no user vectors (it does not score "
                            "by a dot product with item vectors)")
        v = self.model.user_vectors(np.asarray(user_ids, dtype=np.int64).ravel(), self.histories)
        return v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) float32 scores of every catalogue item, from the bound
        histories.
        """
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        scores = self.model._score(user_ids, self.histories)
        assert scores.shape == (len(user_ids), len(self.model.item_ids)), scores.shape
        return scores

    def __repr__(self) -> str:
        return f"BoundSystem({self.name!r}, users_with_history={len(self.histories._cols)})"


class Baseline:
    """Shared plumbing: the catalogue, ``fit`` bookkeeping, ``bind`` and ``for_stage``."""

    name = "baseline"
    bound_class = BoundSystem

    def __init__(self, item_ids) -> None:
        self.item_ids = check_catalogue(item_ids)
        self.can_score_items = np.ones(len(self.item_ids), dtype=bool)
        self.fit_seconds: float | None = None

    @property
    def n_items(self) -> int:
        """The catalogue's size: the width of every score matrix."""
        return len(self.item_ids)

    def _check_fitted(self) -> None:
        if self.fit_seconds is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(split.train) first")

    def bind(self, history: pd.DataFrame | Histories, name: str | None = None) -> BoundSystem:
        """Attach input histories (``split.history(stage)``): returns a scorable system."""
        self._check_fitted()
        hist = history if isinstance(history, Histories) else Histories(history, self.item_ids)
        if not np.array_equal(hist.item_ids, self.item_ids):
            raise ValueError("the histories were built over a different catalogue than the model")
        return self.bound_class(self, hist, name)

    def for_stage(self, split: data.Split, stage: str, name: str | None = None) -> BoundSystem:
        """``bind(split.history(stage))``: for "test" that includes the validation window."""
        return self.bind(split.history(stage), name)

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# Random and popularity
# --------------------------------------------------------------------------------------


class RandomScorer(Baseline):
    """Uniform random scores: the floor.

    Each user's scores come from a generator seeded by ``(seed, user_id)``, so a user's list
    does not depend on which batch they were scored in, and reruns repeat exactly.
    """

    name = "random"

    def __init__(self, item_ids, seed: int = 0) -> None:
        super().__init__(item_ids)
        self.seed = int(seed)

    def fit(self, train: Any = None) -> "RandomScorer":
        """Nothing to learn (random scores need no data); returns the model."""
        self.fit_seconds = 0.0
        return self

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        out = np.empty((len(user_ids), self.n_items), dtype=np.float32)
        for row, u in enumerate(user_ids):
            out[row] = np.random.default_rng([self.seed, int(u)]).random(self.n_items, dtype=np.float32)
        return out


class MostPopular(Baseline):
    """The items with the most positive training ratings, optionally in a recent window.

    ``window_days=None`` counts all of ``train``: the classic MostPop. With a window, only
    positives in the last ``window_days`` days before a reference time count; ties (and the
    many items with no rating in a short window) are broken by the all-time count up to the
    reference time, so the list is never arbitrary.

    Which reference time? That is the subtle part on a per-user split. Its training set
    spans 1996-2018, but a user's "now" is the time of their own last rating, which for many
    users is years before the end of ``train``:

    * ``anchor="global"``: one window ending at the last training rating (what a global
      split would use). For a user whose history ended in 2001 it counts 2018's hits: items
      that did not exist at their "now", and other users' future besides.
    * ``anchor="user"``: each user's own window ``(t_u - window, t_u]``, where ``t_u`` is the
      time of that user's latest input rating. Only ratings made before the user's "now" count,
      so this variant also removes the per-user split's leak of other users' future ratings
      (chapter 00 measured it) -- the honest time-aware popularity.
    """

    def __init__(self, item_ids, window_days: float | None = None, anchor: str = "global") -> None:
        super().__init__(item_ids)
        if anchor not in ("global", "user"):
            raise ValueError(f'anchor must be "global" or "user", got {anchor!r}')
        if window_days is not None and not window_days > 0:
            raise ValueError(f"window_days must be positive or None (all time), got {window_days!r}")
        self.window_days = window_days
        self.anchor = anchor
        span = "all time" if window_days is None else f"{window_days:g} d"
        self.name = f"popular ({span}, {anchor})" if (window_days or anchor == "user") else "popular"

    def fit(self, train: Any) -> "MostPopular":
        """Count the positives of ``train`` per item, keeping their times so a stage can count only
        what came before it; returns the model.
        """
        t0 = time.perf_counter()
        pos = interactions.positives(_train_frame(train))
        if pos.empty:
            raise ValueError("no positive ratings in train: popularity has nothing to count")
        order = np.argsort(pos["timestamp"].to_numpy(), kind="stable")
        self._times = pos["timestamp"].to_numpy(np.int64)[order]  # (m,) sorted
        self._cols = _columns(self.item_ids, pos["item_id"].to_numpy(), "train")[order]  # (m,)
        self.t_end = int(self._times[-1])
        self.global_scores = self._counts_at(self.t_end)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def counts(self, t_ref: int | None = None) -> np.ndarray:
        """(n_items,) window counts at reference time ``t_ref`` (default: end of train)."""
        self._check_fitted()
        hi = len(self._times) if t_ref is None else np.searchsorted(self._times, t_ref, side="right")
        lo = 0 if self.window_days is None else np.searchsorted(
            self._times, (self.t_end if t_ref is None else t_ref) - self.window_days * SECONDS_PER_DAY,
            side="right")
        return np.bincount(self._cols[lo:hi], minlength=self.n_items)

    def _counts_at(self, t_ref: int) -> np.ndarray:
        hi = np.searchsorted(self._times, t_ref, side="right")
        total = np.bincount(self._cols[:hi], minlength=self.n_items).astype(np.float64)
        if self.window_days is None:
            return total.astype(np.float32)
        lo = np.searchsorted(self._times, t_ref - self.window_days * SECONDS_PER_DAY, side="right")
        recent = np.bincount(self._cols[lo:hi], minlength=self.n_items).astype(np.float64)
        return (recent + total / (total.max() + 1.0)).astype(np.float32)  # tie-break < 1

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        if self.anchor == "global":
            return np.broadcast_to(self.global_scores, (len(user_ids), self.n_items)).copy()
        out = np.empty((len(user_ids), self.n_items), dtype=np.float32)
        cache: dict[int, np.ndarray] = {}
        for row, u in enumerate(user_ids):
            t = hist.last_time.get(int(u))
            if t is None:
                raise ValueError(
                    f"user {int(u)} has no rating in the input history, so anchor='user' has no "
                    "'now' for them; use anchor='global' or evaluate split.users(stage)"
                )
            if t not in cache:
                cache[t] = self._counts_at(t)
            out[row] = cache[t]
        return out


# --------------------------------------------------------------------------------------
# Item-kNN
# --------------------------------------------------------------------------------------


class ItemKNN(Baseline):
    """Item-to-item collaborative filtering (Sarwar et al. 2001; Deshpande & Karypis 2004).

    With ``X`` the binary user x item matrix of training positives, the similarity of two
    items is the cosine of their columns, ``s_ij = c_ij / (sqrt(n_i n_j) + shrink)``, where
    ``c_ij`` counts users who liked both and ``n_i`` users who liked ``i``. Each item keeps
    its ``n_neighbors`` most similar items (None keeps all). A user's score for item ``j`` is
    the sum of ``s_ij`` over the items ``i`` they liked. Items with no training positive have
    no column to compare: they are not scoreable (``can_score_items``).

    Dense blocks of ``X^T X`` are computed with torch and only the top neighbours kept, in a
    sparse matrix, so memory stays at ``block x n_items`` whatever the catalogue size. After
    ``fit``, ``nnz`` is the number of similarities that matrix stores (what it costs to keep).
    """

    def __init__(self, item_ids, n_neighbors: int | None = 100, shrink: float = 0.0, block: int = 1024) -> None:
        super().__init__(item_ids)
        if n_neighbors is not None and n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1 or None (all), got {n_neighbors!r}")
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.n_neighbors = n_neighbors
        self.shrink = float(shrink)
        self.block = int(block)
        self.name = "item-kNN" if n_neighbors is None else f"item-kNN (k={n_neighbors})"

    def fit(self, train: Any) -> "ItemKNN":
        """The item-item cosine similarities of the positives in ``train`` (each user-item pair
        once); returns the model.
        """
        t0 = time.perf_counter()
        pos = interactions.positives(_train_frame(train)).drop_duplicates(["user_id", "item_id"])
        if pos.empty:
            raise ValueError("no positive ratings in train: item-kNN has nothing to count")
        cols = _columns(self.item_ids, pos["item_id"].to_numpy(), "train")
        active = np.unique(cols)  # (n_a,) catalogue columns with >= 1 positive
        self.can_score_items = np.zeros(self.n_items, dtype=bool)
        self.can_score_items[active] = True
        self.col_map = np.full(self.n_items, -1, dtype=np.int64)  # catalogue col -> active idx
        self.col_map[active] = np.arange(len(active))
        self.active = active
        _, user_rows = np.unique(pos["user_id"].to_numpy(), return_inverse=True)
        n_u, n_a = int(user_rows.max()) + 1, len(active)
        x = torch.zeros((n_u, n_a), dtype=torch.float32)  # (users, n_a) binary
        x[torch.from_numpy(user_rows), torch.from_numpy(self.col_map[cols])] = 1.0
        norms = x.sum(dim=0).sqrt()  # (n_a,) sqrt(n_i)
        k = n_a - 1 if self.n_neighbors is None else min(self.n_neighbors, n_a - 1)
        rows, nbrs, sims = [], [], []
        for start in range(0, n_a, self.block):
            stop = min(start + self.block, n_a)
            c = x[:, start:stop].T @ x  # (blk, n_a) co-occurrence counts
            s = c / (norms[start:stop, None] * norms[None, :] + self.shrink)  # (blk, n_a) cosine
            s[torch.arange(stop - start), torch.arange(start, stop)] = 0.0  # no self-similarity
            if k < 1:
                continue
            val, idx = torch.topk(s, k, dim=1)  # (blk, k)
            keep = val > 0
            rows.append(torch.arange(start, stop)[:, None].expand(-1, k)[keep])
            nbrs.append(idx[keep])
            sims.append(val[keep])
        if rows:
            r, c, v = torch.cat(rows), torch.cat(nbrs), torch.cat(sims)
        else:  # a single active item: no neighbours at all
            r = c = torch.zeros(0, dtype=torch.long)
            v = torch.zeros(0)
        # Stored transposed (neighbour j, item i) so scores^T = S^T @ H^T is one sparse matmul.
        self._sim_t = torch.sparse_coo_tensor(torch.stack([c, r]), v, (n_a, n_a),
                                              check_invariants=False).coalesce()
        self.nnz = int(v.numel())
        self.fit_seconds = time.perf_counter() - t0
        return self

    def similar_items(self, item_id: int, k: int = 10) -> pd.Series:
        """The ``k`` most similar items to ``item_id`` (item id -> cosine), for inspection."""
        self._check_fitted()
        col = _columns(self.item_ids, np.array([item_id]), "query")[0]
        a = self.col_map[col]
        if a < 0:
            raise KeyError(f"item {item_id} has no positive in train: it has no neighbours")
        e = torch.zeros(len(self.active), 1)
        e[a, 0] = 1.0
        row = torch.sparse.mm(self._sim_t, e)[:, 0]  # (n_a,) s_aj for every kept neighbour j
        top = torch.topk(row, min(k, int((row > 0).sum())))
        return pd.Series(top.values.numpy(), index=self.item_ids[self.active[top.indices.numpy()]])

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        hist.require(user_ids, self.name)
        h = torch.from_numpy(hist.matrix(user_ids, len(self.active), self.col_map))  # (B, n_a)
        s_active = torch.sparse.mm(self._sim_t, h.T.contiguous()).T  # (B, n_a)
        out = np.full((len(user_ids), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.active] = s_active.numpy()
        return out


# --------------------------------------------------------------------------------------
# SASRec-style sequential model
# --------------------------------------------------------------------------------------


@dataclass
class SASRecConfig:
    """Hyper-parameters of :class:`SASRec` (Kang & McAuley 2018, with a sampled softmax)."""

    max_len: int = 50  # items of history the model reads (the most recent ones)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 128  # sequences per step; candidates = distinct targets in the batch
    lr: float = 2e-3
    weight_decay: float = 0.0
    logq: bool = True  # subtract log(sampling probability) of each in-batch candidate
    temperature: float = 1.0
    max_seconds: float | None = None  # stop training after this long (quick mode's budget)
    use_autocast: bool = True  # bf16 autocast (config.autocast)
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None  # CPU threads while training (None: torch's setting)

    def __post_init__(self) -> None:
        if self.max_len < 2 or self.d_model < 1 or self.n_layers < 1 or self.epochs < 1:
            raise ValueError("need max_len >= 2, d_model >= 1, n_layers >= 1 and epochs >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1 or self.temperature <= 0 or self.batch_size < 1:
            raise ValueError("need 0 <= dropout < 1, temperature > 0 and batch_size >= 1")


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model))
        self.dropout = cfg.dropout
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # (B, L, D)
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))  # (B, H, L, D/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, L, D)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


class SASRecNet(nn.Module):
    """Item and position embeddings -> causal blocks -> final norm: ``(B, L) -> (B, L, D)``.

    Sequences are left-padded with item 0, so the newest item always sits at position
    ``L - 1`` and a position embedding means "how recent". The same item embedding table
    scores the output (tied weights), as in SASRec.
    """

    def __init__(self, n_vocab: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.item_emb = nn.Embedding(n_vocab + 1, cfg.d_model, padding_idx=0)  # row 0 = padding
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([_Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices, 0 padding -> (B, L, D) states, each position attending to itself
        and earlier real items only.
        """
        b, t = seq.shape  # (B, L) item indices, 0 = padding
        real = seq > 0  # (B, L)
        x = self.item_emb(seq) + self.pos_emb(torch.arange(t, device=seq.device))  # (B, L, D)
        x = self.drop(x) * real.unsqueeze(-1)  # padding carries nothing
        causal = torch.ones(t, t, dtype=torch.bool, device=seq.device).tril()  # (L, L)
        # attend to earlier real items and always to oneself (a padded row never has an
        # empty mask, which would give NaN)
        mask = (causal & real[:, None, :]) | torch.eye(t, dtype=torch.bool, device=seq.device)  # (B, L, L)
        mask = mask.unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def item_vectors(self) -> torch.Tensor:
        """The output item embeddings (the input ones, tied), padding row left out: (n_vocab, D)."""
        return self.item_emb.weight[1:]  # (n_vocab, D)


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_emb: nn.Embedding,
    log_q: torch.Tensor | None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Next-item cross-entropy over the distinct targets of the batch, with log-Q correction.

    ``hidden`` (N, D) are the states at N real positions and ``targets`` (N,) their next
    items. The candidates are the batch's distinct targets (each one's positive for its own
    rows, a negative for the others); using distinct items means an item never competes with
    itself. A popular item appears as a candidate in many more batches than a rare one, so an
    uncorrected model learns to push popular items down. Subtracting ``log q_j``, the log of
    how often item j is sampled (its share of all training targets), from each logit removes
    that bias (Bengio & Senecal 2008; [yi2019sampling]).

    Args:
        hidden: (N, D) states at the real positions.
        targets: (N,) their next items' embedding rows.
        item_emb: the item embedding (tied input/output).
        log_q: log sampling probability per embedding row, or None for no correction.
        temperature: the logits' divisor.

    Returns:
        The mean cross-entropy, a scalar tensor.
    """
    cand, label = torch.unique(targets, return_inverse=True)  # (U,), (N,) index into cand
    logits = hidden @ item_emb(cand).T / temperature  # (N, U)
    if log_q is not None:
        logits = logits - log_q[cand]
    return F.cross_entropy(logits.float(), label)


class SASRec(Baseline):
    """ID-based sequential retrieval: the user is the transformer's state after their history.

    Trained on ``split.train`` positives only: every user's positive sequence is cut into
    windows of ``max_len + 1`` items (from the newest backwards, so every target is used
    once); at each position the model predicts the next item. The vocabulary is the items
    with a training positive; others (cold items) are not scoreable.

    Same-second positives follow the library's tie rule (:mod:`llmrec_lib.interactions`: a
    same-second positive is never history). A window's state at position k has read positions
    <= k, so predicting item k + 1 from it would let the second of two positives rated in the
    same second be predicted from its twin (15% of training transitions on the reference
    split). Instead each target is predicted from the state at the last position *strictly
    earlier in time*; twins share that state. A target with no earlier positive within
    ``max_len`` items is not trained on: the first second of each history, and the tail of a
    same-second batch longer than the window (on the reference split 42 of 32,922 targets at
    ``max_len=50``, none at 200).
    """

    def __init__(self, item_ids, cfg: SASRecConfig | None = None, **overrides) -> None:
        super().__init__(item_ids)
        cfg = cfg or SASRecConfig()
        self.cfg = SASRecConfig(**{**asdict(cfg), **overrides})
        self.name = "SASRec-style"
        self.net: SASRecNet | None = None
        self.train_log: list[dict] = []

    # ---- data -------------------------------------------------------------------------

    def _windows(self, sequences: Sequence[np.ndarray], times: Sequence[np.ndarray] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training windows under the tie rule, from the newest backwards.

        Args:
            sequences: each user's positives in time order, as model indices (1-based).
            times: their timestamps, aligned; None means no two share a second.

        Returns:
            ``(inputs, targets, sources)``, each ``(n_windows, L)`` and left-padded with 0:
            ``targets[w, p]`` (0 = no target) is predicted from the state at position
            ``sources[w, p]``, the last input strictly earlier in time (``p`` itself when no
            tie); padding positions point at themselves.
        """
        L = self.cfg.max_len
        inputs, targets, sources = [], [], []
        for u, seq in enumerate(sequences):
            t = np.arange(len(seq)) if times is None else np.asarray(times[u])
            end = len(seq)
            while end >= 2:
                start = max(0, end - L - 1)
                w, tw = seq[start:end], t[start:end]  # up to L + 1 items
                off = L - len(w) + 1  # the window position of w[0] as an input
                h = interactions.history_end(tw, tw[1:])  # inputs strictly before each target
                keep = h >= 1
                inp = np.zeros(L, dtype=np.int64)
                tgt = np.zeros(L, dtype=np.int64)
                src = np.arange(L, dtype=np.int64)
                inp[off:] = w[:-1]
                tgt[off:] = np.where(keep, w[1:], 0)
                src[off:] = np.where(keep, off + h - 1, src[off:])
                if keep.any():
                    inputs.append(inp)
                    targets.append(tgt)
                    sources.append(src)
                if start == 0:
                    break
                # the targets in w[0]'s second had no earlier input here: the next window
                # ends after them, so they are trained on once, from their real history
                end = min(start + 1 + int((~keep).sum()), end - 1)
        if not inputs:
            raise ValueError("no user has two training positives in different seconds: "
                             "nothing to learn a next item from")
        return np.stack(inputs), np.stack(targets), np.stack(sources)

    # ---- training ---------------------------------------------------------------------

    def fit(self, train: Any, progress: bool = True) -> "SASRec":
        # A private torch RNG: the same seed gives the same model, and the caller's random
        # state is left as it was.
        """Train on ``train`` (``split.train``) under a private seeded torch RNG, so the same
        config gives the same weights and the caller's random state is untouched; returns the
        model.
        """
        with config.private_torch_rng(self.cfg.seed, self.cfg.num_threads):
            return self._fit(train, progress)

    def _fit(self, train: Any, progress: bool) -> "SASRec":
        t0 = time.perf_counter()
        inputs, targets, sources = self._windows(*self._training_sequences(train))
        self.n_windows = len(inputs)
        self.n_targets = int((targets > 0).sum())
        # targets that share a second with the previous positive: read from an earlier state
        self.n_read_earlier = int(((sources != np.arange(self.cfg.max_len)) & (targets > 0)).sum())
        n_vocab = len(self.vocab_cols)
        freq = np.bincount(targets[targets > 0], minlength=n_vocab + 1).astype(np.float64)
        log_q = torch.tensor(np.log(np.maximum(freq, 1.0) / freq.sum()), dtype=torch.float32,
                             device=self.cfg.device)
        self.net = self._train(SASRecNet(n_vocab, self.cfg), (inputs, targets, sources), log_q,
                               t0, progress)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _training_sequences(self, train: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Each user's liked items in time order as model indices (1-based; 0 pads) and their
        timestamps; sets the vocabulary they define: only items liked in training get an
        embedding."""
        pos = interactions.positives(_train_frame(train)).drop_duplicates(["user_id", "item_id"])
        cols = _columns(self.item_ids, pos["item_id"].to_numpy(), "train")
        vocab_cols = np.unique(cols)  # model index v (1-based) <-> catalogue column vocab_cols[v-1]
        self.vocab_cols = vocab_cols
        self.col_map = np.zeros(self.n_items, dtype=np.int64)  # catalogue col -> model index, 0 = none
        self.col_map[vocab_cols] = np.arange(1, len(vocab_cols) + 1)
        self.can_score_items = self.col_map > 0
        idx = self.col_map[cols]
        _, start, count = np.unique(pos["user_id"].to_numpy(), return_index=True, return_counts=True)
        times = pos["timestamp"].to_numpy(np.int64)
        return ([idx[s : s + c] for s, c in zip(start, count)],
                [times[s : s + c] for s, c in zip(start, count)])

    def _train(self, net: "SASRecNet", windows: tuple[np.ndarray, np.ndarray, np.ndarray],
               log_q: torch.Tensor, t0: float, progress: bool) -> "SASRecNet":
        """Sampled-softmax training over shuffled ``windows`` (inputs, targets, sources) for
        ``cfg.epochs`` epochs or until ``cfg.max_seconds`` (counted from ``t0``) run out, even
        mid-epoch; logs each epoch."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        device = torch.device(cfg.device)
        net = net.to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        x_all, y_all, s_all = (torch.from_numpy(a) for a in windows)
        steps_per_epoch = math.ceil(len(x_all) / cfg.batch_size)
        total = cfg.epochs * steps_per_epoch
        bar = tqdm(total=total, desc="SASRec", disable=not progress, leave=False)
        self.train_log = []
        out_of_time = False
        step = 0
        net.train()
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x_all), generator=gen)
            epoch_loss = 0.0
            for b in range(steps_per_epoch):
                rows = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                x, y, src = (a[rows].to(device) for a in (x_all, y_all, s_all))  # (B, L) each
                with config.autocast(device.type, enabled=cfg.use_autocast):
                    h = net(x)  # (B, L, D)
                    h = h.gather(1, src.unsqueeze(-1).expand_as(h))  # the tie rule's states
                    real = y > 0
                    loss = sampled_softmax_loss(h[real], y[real], net.item_emb,
                                                log_q if cfg.logq else None, cfg.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                epoch_loss += loss.item()
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
                if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                    out_of_time = True  # the time budget ends training, even mid-epoch
                    break
            self.train_log.append({"epoch": epoch, "loss": epoch_loss / (b + 1), "steps": step,
                                   "seconds": time.perf_counter() - t0})
            if out_of_time:
                break
        bar.close()
        self.stopped_early = step < total
        net.eval()
        return net

    # ---- scoring ----------------------------------------------------------------------

    def _sequences(self, user_ids: np.ndarray, hist: Histories) -> torch.Tensor:
        """(B, L) the users' latest known positives as model indices, left-padded."""
        L = self.cfg.max_len
        out = np.zeros((len(user_ids), L), dtype=np.int64)
        empty = []
        for row, u in enumerate(user_ids):
            seq = self.col_map[hist[u]]
            seq = seq[seq > 0][-L:]  # cold items in the history have no embedding: skipped
            if len(seq) == 0:
                empty.append(int(u))
            out[row, L - len(seq) :] = seq
        if empty:
            raise ValueError(
                f"{self.name}: {len(empty)} user(s) have no positive the model knows "
                f"(e.g. {empty[:5]}); evaluate split.users(stage), or fall back to MostPopular"
            )
        return torch.from_numpy(out)

    @torch.inference_mode()
    def user_vectors(self, user_ids: np.ndarray, hist: Histories, batch_size: int = 512) -> torch.Tensor:
        """(len(user_ids), D) the final state after each user's history."""
        self._check_fitted()
        seq = self._sequences(np.asarray(user_ids), hist)
        outs = []
        for s in range(0, len(seq), batch_size):
            with config.autocast(self.cfg.device, enabled=self.cfg.use_autocast):
                outs.append(self.net(seq[s : s + batch_size].to(self.cfg.device))[:, -1].float())
        return torch.cat(outs)

    @torch.inference_mode()
    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        u = self.user_vectors(user_ids, hist)  # (B, D)
        s = (u @ self.net.item_vectors().float().T).cpu().numpy()  # (B, n_vocab)
        out = np.full((len(user_ids), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.vocab_cols] = s
        return out

    # ---- persistence ------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Weights as safetensors, config and vocabulary as JSON."""
        from safetensors.torch import save_file

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, folder / "model.safetensors")
        meta = {"config": asdict(self.cfg), "vocab_item_ids": self.item_ids[self.vocab_cols].tolist(),
                "fit_seconds": self.fit_seconds, "train_log": self.train_log}
        (folder / "sasrec.json").write_text(json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, item_ids) -> "SASRec":
        """A model written by :meth:`save`, for the catalogue ``item_ids``; a folder without one
        raises with what to do.
        """
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{folder} holds no model.safetensors; save a model with SASRec.save(folder)")
        meta = json.loads((folder / "sasrec.json").read_text())
        model = cls(item_ids, SASRecConfig(**meta["config"]))
        vocab_cols = _columns(model.item_ids, np.asarray(meta["vocab_item_ids"]), "saved vocabulary")
        model.vocab_cols = vocab_cols
        model.col_map = np.zeros(model.n_items, dtype=np.int64)
        model.col_map[vocab_cols] = np.arange(1, len(vocab_cols) + 1)
        model.can_score_items = model.col_map > 0
        model.net = SASRecNet(len(vocab_cols), model.cfg)
        model.net.load_state_dict(load_file(folder / "model.safetensors"))
        model.net.eval()
        model.fit_seconds = meta["fit_seconds"]
        model.train_log = meta["train_log"]
        return model


# --------------------------------------------------------------------------------------
# Tables of results
# --------------------------------------------------------------------------------------


def tidy_table(results: Sequence[Any], metrics: Sequence[str], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (system, stage, metric): mean and 95% bootstrap interval.

    ``results`` are :class:`llmrec_lib.evaluate.EvalResult`s. Aggregate metrics (coverage@k)
    are one number for all users: their interval is left empty (NaN).

    Args:
        results: the evaluation results.
        metrics: the metric names to tabulate ("recall@10", ...).
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        The long table: system, stage, metric, mean, lo, hi, n_users.
    """
    rows = []
    for r in results:
        summary = r.summary(n_boot=n_boot, seed=seed, metrics=list(metrics))
        for metric, row in summary.iterrows():
            rows.append({"system": r.name, "stage": r.stage, "metric": metric, "mean": float(row["mean"]),
                         "lo": float(row["lo"]), "hi": float(row["hi"]), "n_users": int(row["n"])})
    return pd.DataFrame(rows, columns=["system", "stage", "metric", "mean", "lo", "hi", "n_users"])


def wide_table(tidy: pd.DataFrame, stage: str, digits: int = 3) -> pd.DataFrame:
    """``tidy_table`` rows of one stage as a readable grid: systems x metrics, "mean [lo, hi]".

    Args:
        tidy: the long table of :func:`tidy_table`.
        stage: the stage to show.
        digits: decimals shown.

    Returns:
        A systems x metrics frame of strings.
    """
    part = tidy[tidy["stage"] == stage]
    if part.empty:
        raise ValueError(f"no rows for stage {stage!r}; stages present: {sorted(tidy['stage'].unique())}")

    def fmt(r) -> str:
        if np.isnan(r["lo"]):
            return f"{r['mean']:.{digits}f}"
        return f"{r['mean']:.{digits}f} [{r['lo']:.{digits}f}, {r['hi']:.{digits}f}]"

    cells = part.assign(cell=part.apply(fmt, axis=1))
    grid = cells.pivot(index="system", columns="metric", values="cell")
    order = list(dict.fromkeys(part["system"]))
    return grid.loc[order, list(dict.fromkeys(part["metric"]))]


def evaluate_stages(model: Baseline, split: data.Split, eval_data: Mapping[str, Any],
                    ks: Sequence[int] = (10, 50, 100), name: str | None = None) -> dict[str, Any]:
    """Bind ``model`` to each stage's history and evaluate it there: ``{stage: EvalResult}``.

    ``eval_data`` maps a stage to its ``EvalData``. The time spent binding (encoding user
    prompts, for example) is added to each result's ``timing["bind_seconds"]``.

    Args:
        model: the fitted model.
        split: the split whose stage histories the model binds.
        eval_data: stage -> its ``EvalData``.
        ks: the cut-offs of the metrics.
        name: the system's name in the results (default: the model's).

    Returns:
        stage -> ``EvalResult``.
    """
    from llmrec_lib import evaluate as E

    out = {}
    for stage, ed in eval_data.items():
        t0 = time.perf_counter()
        system = model.for_stage(split, stage, name=name)
        bind_s = time.perf_counter() - t0
        result = E.evaluate(system, ed, ks=ks)
        result.timing["bind_seconds"] = bind_s
        out[stage] = result
    return out


def bar_chart(tidy: pd.DataFrame, metrics: Sequence[str], stages: Sequence[str] = ("valid", "test"),
              title: str | None = None):
    """One panel per metric; per system one bar per stage, with its 95% interval.

    ``tidy`` comes from :func:`tidy_table`. Returns the matplotlib Figure (PNG in notebooks).

    Args:
        tidy: the long table of :func:`tidy_table`.
        metrics: the metrics to plot, one panel each.
        stages: the stages, one bar each per system.
        title: the figure's title.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(tidy["system"]))
    colors = {"valid": "#DD8452", "test": "#C44E52"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 0.42 * len(systems) + 1.6),
                             sharey=True, squeeze=False)
    height = 0.8 / len(stages)
    for ax, metric in zip(axes[0], metrics):
        for j, stage in enumerate(stages):
            part = tidy[(tidy["metric"] == metric) & (tidy["stage"] == stage)].set_index("system")
            part = part.reindex(systems)
            y = np.arange(len(systems)) + (j - (len(stages) - 1) / 2) * height
            v = part["mean"].to_numpy(float)
            err = np.vstack([v - part["lo"].to_numpy(float), part["hi"].to_numpy(float) - v])
            ax.barh(y, v, height=height, xerr=np.nan_to_num(err), capsize=2,
                    color=colors.get(stage), label=stage)
        ax.set_yticks(np.arange(len(systems)), systems)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
