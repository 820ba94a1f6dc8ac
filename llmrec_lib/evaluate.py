"""The evaluation protocol every chapter uses: full-catalogue ranking, seen items excluded.

One function, :func:`evaluate`, measures any system the same way:

1. For a batch of users, the system either *scores* the whole catalogue
   (``score(user_ids) -> (batch, n_items)``) or *recommends* lists
   (``recommend(user_ids, k) -> (batch, k)`` column indices).
2. Items the user already rated in the stage's input history (all ratings, not only
   positives) are excluded: a recommender that re-suggests what you have seen is not
   retrieving anything. Items the system declares it cannot score (``can_score_items``,
   e.g. an ID model and items nobody rated in training) are never recommended, and a
   target among them is *counted as a miss and recorded*, never silently dropped.
3. The top-K list is taken with a deterministic tie-break (higher score first, then lower
   column index), so two runs, or two batch sizes, give identical lists.
4. Per-user metrics (:mod:`llmrec_lib.metrics`) at each k, coverage, novelty and popularity,
   with bootstrap intervals over users in :meth:`EvalResult.summary`.

We rank the full catalogue rather than 100 sampled negatives: sampled metrics can reorder
models (Krichene & Rendle, KDD 2020). Scoring is batched over users so memory stays at
``batch_size * n_items`` floats however large the catalogue grows.

Usage::

    data = EvalData.from_split(split, "valid", ml.item_ids)
    result = evaluate(system, data, ks=(10, 50, 100))
    result.summary()              # mean and 95% CI per metric
    result.segment("cold")        # recall over cold targets only
    result.compare(other_result, "recall@10")   # paired bootstrap, user by user
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import data
from . import metrics as M

__all__ = ["EvalData", "EvalResult", "MatrixScorer", "StoredRanking", "evaluate", "sampled_hit_rate", "save_ranking", "slug", "top_k"]

SEGMENTS = ("cold", "warm", "scoreable", "unscoreable")


# --------------------------------------------------------------------------------------
# Data: who is evaluated on what
# --------------------------------------------------------------------------------------


def _check_catalogue(item_ids) -> np.ndarray:
    """The catalogue as a 1-D array of distinct ids, in column order."""
    item_ids = np.asarray(item_ids)
    if item_ids.ndim != 1 or len(item_ids) == 0:
        raise ValueError("item_ids must be the 1-D catalogue (ml.item_ids)")
    if len(np.unique(item_ids)) != len(item_ids):
        raise ValueError("item_ids has duplicates: each column must be one catalogue item")
    return item_ids


class _UserRows:
    """Maps user ids to their row in ``users`` (the evaluated users, in the given order)."""

    def __init__(self, users):
        self.users = np.asarray(users, dtype=np.int64)
        if len(np.unique(self.users)) != len(self.users):
            raise ValueError("users has duplicates")
        self._order = np.argsort(self.users, kind="stable")
        self._sorted = self.users[self._order]

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each id, whether the id is an evaluated user at all)."""
        n = len(self.users)
        pos = np.clip(np.searchsorted(self._sorted, ids), 0, max(n - 1, 0))
        known = self._sorted[pos] == ids if n else np.zeros(len(ids), bool)
        return self._order[pos], known


def _target_csr(targets: pd.DataFrame, train: pd.DataFrame, item_ids: np.ndarray,
                rows: _UserRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every user's targets as CSR (ptr, cols) plus a cold flag per target; every user needs
    at least one target and no target twice."""
    users, n_items = rows.users, len(item_ids)
    t_rows, known = rows(targets["user_id"].to_numpy(np.int64))
    if not known.all():
        raise ValueError(
            f"{int((~known).sum())} target rows belong to users not in `users`; "
            "evaluate a subset with EvalData.subset() instead"
        )
    t_cols = _column_lookup(item_ids, targets["item_id"].to_numpy(np.int64), "target")
    if "is_cold" in targets.columns:
        t_cold = targets["is_cold"].to_numpy(bool)
    else:
        warm = np.zeros(n_items, dtype=bool)
        warm[_column_lookup(item_ids, train["item_id"].to_numpy(np.int64), "train")] = True
        t_cold = ~warm[t_cols]
    target_ptr, target_cols, order = _csr(t_rows, t_cols, len(users))
    n_t = np.diff(target_ptr)
    if (n_t == 0).any():
        bad = users[n_t == 0][:5].tolist()
        raise ValueError(f"users {bad} have no targets at this stage; leave them out of `users`")
    if (np.diff(_pair_keys(target_ptr, target_cols, n_items)) == 0).any():
        raise ValueError("a user has the same target item twice; targets must be unique")
    return target_ptr, target_cols, t_cold[order]


def _pair_keys(ptr: np.ndarray, cols: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 key per (user row, column) pair of a CSR: row * n_items + column."""
    return np.repeat(np.arange(len(ptr) - 1, dtype=np.int64), np.diff(ptr)) * n_items + cols


def _exclusion_csr(history: pd.DataFrame, item_ids: np.ndarray, rows: _UserRows,
                   target_ptr: np.ndarray, target_cols: np.ndarray,
                   allow_target_in_history: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """What each user rated in the input history, as CSR (ptr, cols), deduplicated; a target
    found there raises unless ``allow_target_in_history`` (then it stays rankable, noted)."""
    n_items = len(item_ids)
    h_rows, known = rows(history["user_id"].to_numpy(np.int64))
    h_cols = _column_lookup(item_ids, history["item_id"].to_numpy(np.int64)[known], "history")
    h_keys = np.unique(h_rows[known] * n_items + h_cols)  # dedupe (user, item) pairs
    t_keys = _pair_keys(target_ptr, target_cols, n_items)
    notes: list[str] = []
    overlap = np.isin(h_keys, t_keys, assume_unique=True)
    if overlap.any():
        if not allow_target_in_history:
            raise ValueError(
                f"{int(overlap.sum())} targets are items the user already rated in the "
                "input history, so excluding seen items would make them unreachable. "
                "Fix the split, or pass allow_target_in_history=True to keep them rankable."
            )
        notes.append(
            f"{int(overlap.sum())} targets were also in the user's history; they were kept "
            "rankable (not excluded) for that user"
        )
        h_keys = h_keys[~overlap]
    exclude_ptr, exclude_cols, _ = _csr(h_keys // n_items, h_keys % n_items, len(rows.users))
    return exclude_ptr, exclude_cols, notes


def _column_lookup(item_ids: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    """Catalogue column of each id in ``ids``; unknown ids raise (never dropped)."""
    order = np.argsort(item_ids, kind="stable")
    ordered = item_ids[order]
    pos = np.clip(np.searchsorted(ordered, ids), 0, max(len(ordered) - 1, 0))
    found = ordered[pos] == ids if len(ordered) else np.zeros(len(ids), dtype=bool)
    if not found.all():
        missing = np.unique(ids[~found])[:5].tolist()
        raise ValueError(
            f"{int((~found).sum())} {what} rows name items outside the catalogue "
            f"(e.g. {missing}); pass item_ids = the full catalogue (ml.item_ids)"
        )
    return order[pos].astype(np.int64)


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort (row, col) pairs; return (ptr (n_rows + 1,), cols, order applied)."""
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=ptr[1:])
    return ptr, cols, order


@dataclass
class EvalData:
    """Everything the protocol needs for one stage, as arrays in catalogue column order.

    Targets and exclusions are stored as CSR: user row ``u`` owns
    ``target_cols[target_ptr[u]:target_ptr[u + 1]]`` (sorted by column), and the flags
    ``target_is_cold`` are aligned with ``target_cols``.
    """

    stage: str
    user_ids: np.ndarray  # (n_users,) int64, evaluation order
    item_ids: np.ndarray  # (n_items,) catalogue ids; position = column index
    target_ptr: np.ndarray  # (n_users + 1,) int64
    target_cols: np.ndarray  # (n_targets_total,) int64
    target_is_cold: np.ndarray  # (n_targets_total,) bool
    exclude_ptr: np.ndarray  # (n_users + 1,) int64
    exclude_cols: np.ndarray  # (n_excluded_total,) int64
    item_counts: np.ndarray  # (n_items,) int64 training interactions per column
    notes: list[str] = field(default_factory=list)

    # ---- construction ---------------------------------------------------------------

    @classmethod
    def from_split(cls, split: Any, stage: str, item_ids, **kwargs) -> "EvalData":
        """Build from a :class:`llmrec_lib.data.Split`: users ``split.users(stage)``,
        targets ``split.targets(stage)``, exclusions ``split.history(stage)`` and
        popularity from ``split.train``. ``item_ids`` is the catalogue in column order."""
        return cls.from_frames(
            targets=split.targets(stage),
            history=split.history(stage),
            train=split.train,
            item_ids=item_ids,
            users=split.users(stage),
            stage=stage,
            **kwargs,
        )

    @classmethod
    def from_frames(
        cls,
        targets: pd.DataFrame,
        history: pd.DataFrame,
        train: pd.DataFrame,
        item_ids,
        users=None,
        stage: str = "custom",
        allow_target_in_history: bool = False,
    ) -> "EvalData":
        """Build from DataFrames with ``user_id`` and ``item_id`` columns.

        ``targets`` may carry ``is_cold``; without it a target is cold when its item has no
        ``train`` row. ``users`` defaults to the sorted users of ``targets``; every one of
        them must have a target. A target the user already rated in ``history`` would be
        excluded from ranking and so could never be hit: that raises, unless
        ``allow_target_in_history=True``, which keeps such items rankable for that user and
        records how many there were in ``notes``.
        """
        data.require_columns(targets, ("user_id", "item_id"), "targets")
        data.require_columns(history, ("user_id", "item_id"), "history")
        data.require_columns(train, ("item_id",), "train")
        item_ids = _check_catalogue(item_ids)
        n_items = len(item_ids)
        if users is None:
            users = np.unique(targets["user_id"].to_numpy(np.int64))
        rows = _UserRows(users)
        users = rows.users
        target_ptr, target_cols, target_is_cold = _target_csr(targets, train, item_ids, rows)
        exclude_ptr, exclude_cols, notes = _exclusion_csr(
            history, item_ids, rows, target_ptr, target_cols, allow_target_in_history
        )
        tr_cols = _column_lookup(item_ids, train["item_id"].to_numpy(np.int64), "train")
        item_counts = np.bincount(tr_cols, minlength=n_items).astype(np.int64)
        return cls(
            stage=stage,
            user_ids=users,
            item_ids=item_ids,
            target_ptr=target_ptr,
            target_cols=target_cols,
            target_is_cold=target_is_cold.astype(bool),
            exclude_ptr=exclude_ptr,
            exclude_cols=exclude_cols,
            item_counts=item_counts,
            notes=notes,
        )

    # ---- views ------------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        """How many users are evaluated."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """How many items the catalogue holds (the score matrices' width)."""
        return len(self.item_ids)

    @property
    def n_targets(self) -> np.ndarray:
        """(n_users,) number of targets per user."""
        return np.diff(self.target_ptr)

    @property
    def n_history(self) -> np.ndarray:
        """(n_users,) number of distinct items each user rated in the input history."""
        return np.diff(self.exclude_ptr)

    @property
    def targets(self) -> list[np.ndarray]:
        """Per-user target column arrays (views)."""
        return _split(self.target_cols, self.target_ptr)

    @property
    def exclusions(self) -> list[np.ndarray]:
        """Per-user excluded (already rated) column arrays (views)."""
        return _split(self.exclude_cols, self.exclude_ptr)

    @property
    def is_cold(self) -> list[np.ndarray]:
        """Per-user cold flags aligned with :attr:`targets`."""
        return _split(self.target_is_cold, self.target_ptr)

    def subset(self, users) -> "EvalData":
        """The same data for some users: a bool mask over rows or an array of user ids
        (kept in this object's order). Handy for quick-mode runs on a sample of users."""
        rows = _user_rows(self.user_ids, users)
        t_idx = _gather(self.target_ptr, rows)
        e_idx = _gather(self.exclude_ptr, rows)
        return EvalData(
            stage=self.stage,
            user_ids=self.user_ids[rows],
            item_ids=self.item_ids,
            target_ptr=_ptr(self.target_ptr, rows),
            target_cols=self.target_cols[t_idx],
            target_is_cold=self.target_is_cold[t_idx],
            exclude_ptr=_ptr(self.exclude_ptr, rows),
            exclude_cols=self.exclude_cols[e_idx],
            item_counts=self.item_counts,
            notes=list(self.notes),
        )

    def __repr__(self) -> str:
        return (
            f"EvalData(stage={self.stage!r}, users={self.n_users}, items={self.n_items}, "
            f"targets={len(self.target_cols)} ({int(self.target_is_cold.sum())} cold), "
            f"excluded={len(self.exclude_cols)})"
        )


def _user_rows(user_ids: np.ndarray, users) -> np.ndarray:
    """Row indices selected by a bool mask over rows or by an array of user ids."""
    sel = np.asarray(users)
    if sel.dtype == bool:
        if sel.shape != user_ids.shape:
            raise ValueError(f"user mask has shape {sel.shape}, expected {user_ids.shape}")
        return np.flatnonzero(sel)
    sel = sel.astype(np.int64).ravel()
    mask = np.isin(user_ids, sel)
    if mask.sum() != len(np.unique(sel)):
        raise ValueError("some requested user ids are not evaluated here")
    return np.flatnonzero(mask)


def _split(values: np.ndarray, ptr: np.ndarray) -> list[np.ndarray]:
    """CSR -> list of per-row views (an empty list for zero rows, unlike np.split)."""
    return np.split(values, ptr[1:-1]) if len(ptr) > 1 else []


def _ptr(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(ptr[rows + 1] - ptr[rows], out=out[1:])
    return out


def _gather(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat indices of the CSR entries of ``rows``, in row order."""
    lengths = ptr[rows + 1] - ptr[rows]
    starts = np.repeat(ptr[rows] - _ptr(ptr, rows)[:-1], lengths)
    return starts + np.arange(lengths.sum(), dtype=np.int64)


# --------------------------------------------------------------------------------------
# Top-K
# --------------------------------------------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, best first.

    Ties go to the lower column index, so the result does not depend on how numpy's
    partition happened to order equal values. Cost: one O(n_items) partition per row, a few
    O(n_items) masks, and a sort of k values.

    Args:
        scores: (batch, n_items), free of NaN; -inf marks items never to recommend.
        k: how many columns per row.

    Returns:
        (batch, k) int column indices; slots whose score is -inf (excluded or unscoreable
        items) come back as -1: such items are never recommended.
    """
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D (batch, n_items), got shape {s.shape}")
    if k < 1:
        raise ValueError("k must be at least 1")
    b, n = s.shape
    kk = min(k, n)
    if b == 0 or n == 0:
        return np.full((b, k), -1, dtype=np.int64)
    if kk == n:
        idx = np.argsort(-s, axis=1, kind="stable")
    else:
        # The kk-th largest value per row. Partitioning values is 10-20x faster than
        # argpartition (no index array; many tied values are cheap), and the masks below
        # recover the indices exactly, ties included.
        thr = np.partition(s, n - kk, axis=1)[:, n - kk : n - kk + 1]  # (b, 1)
        gt = s > thr
        eq = s == thr
        need = kk - gt.sum(axis=1)  # (b,) >= 1: how many tied items fill the list
        n_eq = eq.sum(axis=1)
        if (n_eq == need).all():
            sel = gt | eq
        else:  # ties straddle the cut: keep the lowest columns among the tied
            sel = gt | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
        cols = np.nonzero(sel)[1].reshape(b, kk)  # ascending columns within each row
        vals = np.take_along_axis(s, cols, axis=1)
        idx = np.take_along_axis(cols, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    idx = idx.astype(np.int64)
    idx[np.take_along_axis(s, idx, axis=1) == -np.inf] = -1
    if kk < k:
        idx = np.concatenate([idx, np.full((b, k - kk), -1, dtype=np.int64)], axis=1)
    return idx


# --------------------------------------------------------------------------------------
# Systems
# --------------------------------------------------------------------------------------


class MatrixScorer:
    """A precomputed score matrix as a system: ``scores[i]`` belongs to ``user_ids[i]``."""

    def __init__(self, scores: np.ndarray, user_ids, name: str = "matrix"):
        self.scores = np.asarray(scores)
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        if self.scores.ndim != 2 or len(self.user_ids) != self.scores.shape[0]:
            raise ValueError("scores must be (len(user_ids), n_items)")
        self._order = np.argsort(self.user_ids, kind="stable")
        self.name = name

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """The stored rows of ``user_ids`` (KeyError for a user without one)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        pos = np.searchsorted(self.user_ids[self._order], user_ids)
        rows = self._order[np.clip(pos, 0, len(self.user_ids) - 1)]
        if not (self.user_ids[rows] == user_ids).all():
            raise KeyError("MatrixScorer has no row for some requested users")
        return self.scores[rows]


def slug(name: str) -> str:
    """A file-name-safe version of a system name: ``"popular (1095 d)"`` -> ``"popular-1095-d"``.

    Args:
        name: the system's name.

    Returns:
        Lowercase letters, digits and single dashes.
    """
    import re

    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not out:
        raise ValueError(f"cannot make a file name from {name!r}")
    return out


def save_ranking(result: "EvalResult", item_ids, path, *, meta: dict | None = None) -> Path:
    """Save the top-K lists of ``result`` so a later chapter can re-measure the system without
    its model.

    :class:`StoredRanking` loads it back as a system; evaluating that system on the same
    ``EvalData`` reproduces every metric at k <= the saved K, segments included.

    Args:
        result: the :class:`EvalResult` whose lists are saved.
        item_ids: the catalogue's item ids, in column order (lists are saved as item ids, seen
            items already removed).
        path: the compressed ``.npz`` file to write.
        meta: extra facts stored with the lists (which model, which data).

    Returns:
        ``path``.
    """
    import json

    item_ids = np.asarray(item_ids, dtype=np.int64)
    ids = np.where(result.topk >= 0, item_ids[np.clip(result.topk, 0, None)], -1).astype(np.int32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"name": result.name, "stage": result.stage, "ks": list(result.ks), **(meta or {})}
    np.savez_compressed(path, user_ids=result.user_ids.astype(np.int64), item_ids=ids,
                        meta=np.array(json.dumps(info)))
    return path


class StoredRanking:
    """A system that replays the top-K lists written by :func:`save_ranking`.

    ``recommend(user_ids, k)`` returns the stored lists (column indices into ``item_ids``);
    asking for a user that was not saved, or for a deeper list than was saved, raises.
    """

    def __init__(self, path, item_ids):
        import json

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no stored ranking at {path}: run the command that writes it "
                                    "(python -m llmrec_lib.recipes evaluate NAME)")
        with np.load(path) as z:
            self.user_ids = z["user_ids"]
            ids = z["item_ids"].astype(np.int64)
            self.meta = json.loads(str(z["meta"]))
        self.name = self.meta.get("name", path.stem)
        self.depth = ids.shape[1]
        cols = np.full(ids.shape, -1, dtype=np.int64)
        valid = ids >= 0
        cols[valid] = _column_lookup(np.asarray(item_ids, dtype=np.int64), ids[valid], "stored ranking")
        self._cols = cols
        self._row = {int(u): i for i, u in enumerate(self.user_ids)}

    def recommend(self, user_ids, k: int) -> np.ndarray:
        """The stored top-``k`` columns of each of ``user_ids`` (-1 past the stored K)."""
        missing = [int(u) for u in user_ids if int(u) not in self._row]
        if missing:
            raise KeyError(f"the stored ranking has no list for users {missing[:5]}")
        rows = np.array([self._row[int(u)] for u in user_ids], dtype=np.int64)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        width = min(k, self.depth)
        out[:, :width] = self._cols[rows, :width]
        return out


def _resolve(system: Any, method: str) -> tuple[str, Callable]:
    if method not in ("auto", "score", "recommend"):
        raise ValueError("method must be 'auto', 'score' or 'recommend'")
    if method in ("auto", "score") and hasattr(system, "score"):
        return "score", system.score
    if method in ("auto", "recommend") and hasattr(system, "recommend"):
        return "recommend", system.recommend
    if method in ("auto", "score") and callable(system):
        return "score", system
    raise TypeError(
        "a system must have score(user_ids) -> (batch, n_items) scores, or "
        "recommend(user_ids, k) -> (batch, k) column indices, or be a callable scorer"
    )


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor; bf16 has no numpy dtype
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _check_scores(raw: Any, batch: int, n_items: int) -> np.ndarray:
    s = _to_numpy(raw)
    if s.shape != (batch, n_items):
        raise ValueError(
            f"score() returned shape {s.shape}, expected ({batch}, {n_items}) = "
            "(len(user_ids), catalogue size) in catalogue column order"
        )
    if s.dtype.kind not in "iuf":
        raise TypeError(f"score() returned dtype {s.dtype}; return float scores")
    dtype = s.dtype if s.dtype in (np.float32, np.float64) else np.float64
    s = np.array(s, dtype=dtype, copy=True)  # we write -inf into it: never touch the caller's
    if np.isnan(s).any():
        raise ValueError("score() returned NaN; NaN has no rank (use -inf for 'never recommend')")
    return s


def _check_recs(raw: Any, batch: int, k: int, n_items: int) -> np.ndarray:
    r = _to_numpy(raw)
    if r.shape != (batch, k):
        raise ValueError(
            f"recommend() returned shape {r.shape}, expected ({batch}, {k}); pad with -1 "
            "when fewer items are available"
        )
    if r.dtype.kind not in "iu":
        raise TypeError(f"recommend() must return integer column indices, got {r.dtype}")
    r = r.astype(np.int64)
    if r.size and (r.min() < -1 or r.max() >= n_items):
        raise ValueError(f"recommend() returned indices outside -1..{n_items - 1}")
    return r


def _filter_recs(recs: np.ndarray, banned: np.ndarray, kmax: int) -> np.ndarray:
    """Drop banned slots (bool (batch, k)) keeping rank order; first kmax, -1 padded."""
    order = np.argsort(banned, axis=1, kind="stable")  # allowed slots first, in rank order
    kept = np.take_along_axis(recs, order, axis=1)[:, :kmax]
    ok = ~np.take_along_axis(banned, order, axis=1)[:, :kmax]
    kept = np.where(ok, kept, -1)
    if kept.shape[1] < kmax:
        kept = np.concatenate([kept, np.full((len(kept), kmax - kept.shape[1]), -1)], axis=1)
    return kept


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


@dataclass
class EvalResult:
    """Per-user metrics, aggregates, the top-K matrix, timing and notes of one evaluation."""

    name: str
    stage: str
    ks: tuple[int, ...]
    per_user: pd.DataFrame  # one row per evaluated user
    aggregates: dict[str, float]  # coverage@k, gini@k
    topk: np.ndarray  # (n_users, max k) column indices, -1 = empty slot
    timing: dict[str, float]
    notes: list[str]
    counts: dict[str, int]
    # what segment() needs to recompute metrics on a subset of targets
    _target_ptr: np.ndarray = field(repr=False)
    _target_cols: np.ndarray = field(repr=False)
    _target_flags: dict[str, np.ndarray] = field(repr=False)
    _item_counts: np.ndarray = field(repr=False)
    _metric_names: tuple[str, ...] = field(repr=False)

    @property
    def user_ids(self) -> np.ndarray:
        """The evaluated users, in the order of ``per_user``."""
        return self.per_user["user_id"].to_numpy()

    @property
    def item_counts(self) -> np.ndarray:
        """(n_items,) training interactions per catalogue column: the popularity that novelty
        and the popularity metrics were computed against."""
        return self._item_counts

    @property
    def metric_columns(self) -> list[str]:
        """Per-user metric columns (everything but ids and counts)."""
        skip = {"user_id", "n_targets", "n_cold_targets", "n_unscoreable_targets", "n_history"}
        return [c for c in self.per_user.columns if c not in skip]

    def summary(
        self, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, metrics: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Mean and (1 - alpha) bootstrap interval over users for each metric.

        Aggregate metrics (coverage, gini) are one number for the whole set of lists: they
        appear with their value as ``mean`` and no interval. Every metric uses the same
        resamples (same seed), so the intervals are comparable.
        """
        rows = []
        for col in metrics or self.metric_columns:
            if col in self.aggregates:
                rows.append((col, self.aggregates[col], np.nan, np.nan, len(self.per_user)))
                continue
            values = self.per_user[col].to_numpy(np.float64)
            ci = M.bootstrap_ci(values, n_boot=n_boot, alpha=alpha, seed=seed, nan_policy="omit")
            rows.append((col, ci.mean, ci.lo, ci.hi, int(np.isfinite(values).sum())))
        if metrics is None:
            for key, value in self.aggregates.items():
                rows.append((key, value, np.nan, np.nan, len(self.per_user)))
        return pd.DataFrame(rows, columns=["metric", "mean", "lo", "hi", "n"]).set_index("metric")

    def mean(self, metric: str) -> float:
        """The point value of one metric (per-user mean, or the aggregate)."""
        if metric in self.aggregates:
            return float(self.aggregates[metric])
        if metric not in self.per_user.columns:
            raise KeyError(f"no metric {metric!r}; have {self.metric_columns + list(self.aggregates)}")
        values = self.per_user[metric].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else float("nan")

    def segment(self, name: str | None = None, *, users=None, targets=None) -> "EvalResult":
        """The evaluation restricted to a segment, with the same API.

        ``name``: ``"cold"`` / ``"warm"`` (targets nobody / somebody rated in training) or
        ``"scoreable"`` / ``"unscoreable"`` (targets the system could / could not score).
        ``users``: bool mask over :attr:`per_user` rows, or user ids (e.g. short histories).
        ``targets``: bool mask over the flat targets (``EvalData.target_cols`` order).
        Accuracy is recomputed against the kept targets only (``segment("cold")`` gives
        recall over cold targets), for users with at least one kept target. The top-K lists
        are unchanged: nothing is re-ranked.
        """
        keep_t = np.ones(len(self._target_cols), dtype=bool)
        label = []
        if name is not None:
            if name not in SEGMENTS:
                raise ValueError(f"unknown segment {name!r}; choose from {SEGMENTS} or pass masks")
            flag = self._target_flags["cold" if name in ("cold", "warm") else "unscoreable"]
            keep_t &= flag if name in ("cold", "unscoreable") else ~flag
            label.append(name)
        if targets is not None:
            t = np.asarray(targets, dtype=bool)
            if t.shape != keep_t.shape:
                raise ValueError(f"target mask has shape {t.shape}, expected {keep_t.shape}")
            keep_t &= t
            label.append("targets")
        keep_u = np.ones(len(self.per_user), dtype=bool)
        if users is not None:
            keep_u[:] = False
            keep_u[_user_rows(self.user_ids, users)] = True
            label.append("users")
        rows = np.flatnonzero(keep_u)
        lengths = self._target_ptr[rows + 1] - self._target_ptr[rows]
        t_idx = _gather(self._target_ptr, rows)  # flat target positions, row by row
        owner = np.repeat(np.arange(len(rows)), lengths)  # position in `rows` of each
        kept = keep_t[t_idx]
        t_idx, owner = t_idx[kept], owner[kept]
        n_kept = np.bincount(owner, minlength=len(rows))
        rows = rows[n_kept > 0]  # users with at least one kept target
        ptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(n_kept[n_kept > 0], out=ptr[1:])
        base = self.per_user.iloc[rows]
        flags = {k: v[t_idx] for k, v in self._target_flags.items()}
        return _build_result(
            name=f"{self.name} [{' & '.join(label) or 'all'}]",
            stage=self.stage,
            ks=self.ks,
            user_ids=base["user_id"].to_numpy(),
            n_history=base["n_history"].to_numpy(),
            topk=self.topk[rows],
            target_ptr=ptr,
            target_cols=self._target_cols[t_idx],
            flags=flags,
            item_counts=self._item_counts,
            metric_names=self._metric_names,
            timing={},
            notes=list(self.notes),
        )

    def compare(
        self, other: "EvalResult", metric: str = "recall@10", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
    ) -> M.PairedResult:
        """Paired bootstrap of ``self - other`` on one per-user metric, matched by user id."""
        a = self.per_user.set_index("user_id")[metric]
        b = other.per_user.set_index("user_id")[metric]
        if set(a.index) != set(b.index):
            raise ValueError(
                f"the two results cover different users ({len(a)} vs {len(b)}); evaluate both "
                "systems on the same EvalData"
            )
        return M.paired_bootstrap(a.to_numpy(), b.loc[a.index].to_numpy(), n_boot=n_boot, alpha=alpha, seed=seed)

    def to_dict(self, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, segments: bool = True) -> dict:
        """A JSON-ready summary (no per-user rows): metrics with intervals, aggregates,
        counts, timing, notes, and the segments: cold / warm when some targets are cold,
        scoreable / unscoreable when the system could not score some targets."""

        def table(result: EvalResult) -> dict:
            s = result.summary(n_boot=n_boot, alpha=alpha, seed=seed)
            return {m: {"mean": _json_float(r["mean"]), "lo": _json_float(r["lo"]), "hi": _json_float(r["hi"])}
                    for m, r in s.iterrows()}

        out = {
            "name": self.name,
            "stage": self.stage,
            "ks": list(self.ks),
            "counts": {k: int(v) for k, v in self.counts.items()},
            "metrics": table(self),
            "timing": {k: _json_float(v) for k, v in self.timing.items()},
            "notes": list(self.notes),
        }
        if segments:
            out["segments"] = {}
            for seg in SEGMENTS:
                if self._target_flags["cold" if seg in ("cold", "warm") else "unscoreable"].any():
                    part = self.segment(seg)
                    out["segments"][seg] = {"n_users": len(part.per_user), "counts": part.counts,
                                            "metrics": table(part)}
        return out

    def __repr__(self) -> str:
        head = ", ".join(f"{m}={self.mean(m):.4f}" for m in (f"recall@{self.ks[0]}", f"ndcg@{self.ks[0]}")
                         if m in self.per_user.columns)
        return (f"EvalResult({self.name!r}, stage={self.stage!r}, users={len(self.per_user)}, "
                f"{head}, notes={len(self.notes)})")


def _build_result(
    *, name, stage, ks, user_ids, n_history, topk, target_ptr, target_cols, flags, item_counts,
    metric_names, timing, notes,
) -> EvalResult:
    targets = _split(target_cols, target_ptr)
    n_items = len(item_counts)
    per_user: dict[str, np.ndarray] = {"user_id": np.asarray(user_ids, dtype=np.int64)}
    n_t = np.diff(target_ptr)
    per_user["n_targets"] = n_t
    owner = np.repeat(np.arange(len(n_t)), n_t)  # user row of each flat target
    for key in ("cold", "unscoreable"):
        per_user[f"n_{key}_targets"] = np.bincount(owner[flags[key]], minlength=len(n_t)).astype(np.int64)
    per_user["n_history"] = np.asarray(n_history, dtype=np.int64)
    per_user.update(M.ranking_metrics(topk, targets, ks=ks, metrics=metric_names))
    aggregates = {}
    for k in ks:
        per_user[f"novelty@{k}"] = M.novelty(topk, item_counts, k)
        per_user[f"popularity@{k}"] = M.average_popularity(topk, item_counts, k)
        per_user[f"pop_percentile@{k}"] = M.popularity_percentile(topk, item_counts, k)
        aggregates[f"coverage@{k}"] = M.coverage(topk, n_items, k) if len(topk) else float("nan")
        aggregates[f"gini@{k}"] = M.gini_index(topk, n_items, k) if len(topk) else float("nan")
    counts = {
        "n_users": int(len(n_t)),
        "n_items": int(n_items),
        "n_targets": int(n_t.sum()),
        "n_cold_targets": int(flags["cold"].sum()),
        "n_unscoreable_targets": int(flags["unscoreable"].sum()),
    }
    return EvalResult(
        name=name, stage=stage, ks=tuple(ks), per_user=pd.DataFrame(per_user), aggregates=aggregates,
        topk=topk, timing=timing, notes=notes, counts=counts, _target_ptr=target_ptr,
        _target_cols=target_cols, _target_flags=flags, _item_counts=item_counts, _metric_names=tuple(metric_names),
    )


# --------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------


def evaluate(
    system: Any,
    data: EvalData,
    ks: Sequence[int] = (10, 50, 100),
    batch_size: int = 256,
    *,
    can_score_items=None,
    exclude_seen: bool = True,
    method: str = "auto",
    metrics: Sequence[str] = ("recall", "ndcg", "hr", "mrr"),
    name: str | None = None,
    progress: bool = False,
) -> EvalResult:
    """Rank the full catalogue for every user of ``data`` and measure the top-K lists.

    A recommender is asked for ``k + (largest number of banned items in the batch)`` items
    (banned = seen or unscoreable), so that ``k`` remain after removing them; it need not
    know about exclusions.

    Args:
        system: an object with ``score(user_ids) -> (batch, n_items)`` (numpy or torch; higher
            is better; -inf = never recommend), or with ``recommend(user_ids, k) -> (batch,
            k)`` column indices (best first, -1 = no more items), or a plain scoring callable.
        data: the users, their targets and their seen items (:class:`EvalData`).
        ks: the list lengths measured.
        batch_size: users scored at once.
        can_score_items: bool (n_items,), False for items the system cannot score (default:
            the system's own ``can_score_items`` attribute, else all True). Such items are
            never recommended; targets among them stay in the denominators (they are misses),
            are counted per user in ``n_unscoreable_targets``, announced in ``notes`` and
            measurable with ``segment("scoreable")`` / ``segment("unscoreable")``.
        exclude_seen: False keeps seen items rankable.
        method: "auto", "score" or "recommend": forces one path when a system has both.
        metrics: which metrics, at every k.
        name: the system's name in the result (default: its ``name`` attribute).
        progress: show a progress bar.

    Returns:
        An :class:`EvalResult`: per-user metrics, means with intervals, segments.
    """
    if not isinstance(data, EvalData):
        raise TypeError("data must be an EvalData (EvalData.from_split(split, stage, ml.item_ids))")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError("ks must hold positive list lengths, e.g. (10, 50, 100)")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    kind, fn = _resolve(system, method)
    name = name or getattr(system, "name", None) or type(system).__name__
    mask = _scoreable_mask(system, can_score_items, data.n_items)
    unscoreable_cols = np.flatnonzero(~mask) if mask is not None else np.zeros(0, dtype=np.int64)

    t_start = time.perf_counter()
    topk, system_s = _rank_all(kind, fn, data, ks[-1], batch_size, unscoreable_cols,
                               exclude_seen, progress, name)
    protocol_s = time.perf_counter() - t_start

    flags = {
        "cold": data.target_is_cold.copy(),
        "unscoreable": ~mask[data.target_cols] if mask is not None else np.zeros(len(data.target_cols), bool),
    }
    notes = list(data.notes) + _target_notes(flags, len(data.target_cols), exclude_seen)
    t_metrics = time.perf_counter()
    result = _build_result(
        name=name, stage=data.stage, ks=ks, user_ids=data.user_ids, n_history=data.n_history,
        topk=topk, target_ptr=data.target_ptr, target_cols=data.target_cols, flags=flags,
        item_counts=data.item_counts, metric_names=tuple(metrics), timing={}, notes=notes,
    )
    total = time.perf_counter() - t_start
    result.timing.update({
        "seconds": total,
        "system_seconds": system_s,
        "ranking_seconds": protocol_s - system_s,
        "metrics_seconds": time.perf_counter() - t_metrics,
        "users_per_s": data.n_users / total if total > 0 else float("inf"),
    })
    return result


def _scoreable_mask(system, can_score_items, n_items: int) -> np.ndarray | None:
    """The (n_items,) bool mask of items the system can score: the argument, else the system's
    own ``can_score_items`` attribute, else None (all scoreable)."""
    mask = can_score_items if can_score_items is not None else getattr(system, "can_score_items", None)
    if mask is None:
        return None
    mask = _to_numpy(mask).astype(bool)
    if mask.shape != (n_items,):
        raise ValueError(f"can_score_items has shape {mask.shape}, expected ({n_items},)")
    return mask


def _rank_all(kind, fn, data: EvalData, kmax: int, batch_size: int, unscoreable_cols,
              exclude_seen: bool, progress: bool, name: str) -> tuple[np.ndarray, float]:
    """Every user's top-``kmax`` columns, batch by batch, with banned items (seen, or
    unscoreable) never in a list; returns the lists and the seconds spent inside the system."""
    n_users = data.n_users
    ex_rows = np.repeat(np.arange(n_users, dtype=np.int64), data.n_history)
    topk = np.empty((n_users, kmax), dtype=np.int64)
    system_s = 0.0
    starts = range(0, n_users, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"evaluate {name}", unit="batch")
    for start in starts:
        stop = min(start + batch_size, n_users)
        uids = data.user_ids[start:stop]
        e0, e1 = data.exclude_ptr[start], data.exclude_ptr[stop]
        seen = (ex_rows[e0:e1] - start, data.exclude_cols[e0:e1]) if exclude_seen else None
        rank = _rank_by_scores if kind == "score" else _rank_by_recs
        topk[start:stop], secs = rank(fn, uids, data.n_items, kmax, unscoreable_cols, seen)
        system_s += secs
    return topk, system_s


def _rank_by_scores(fn, uids, n_items: int, kmax: int, unscoreable_cols, seen):
    """A scoring system's batch: banned items set to -inf, then the top ``kmax``."""
    t0 = time.perf_counter()
    raw = fn(uids)
    secs = time.perf_counter() - t0
    s = _check_scores(raw, len(uids), n_items)  # (batch, n_items) own copy
    if len(unscoreable_cols):
        s[:, unscoreable_cols] = -np.inf
    if seen is not None:
        s[seen] = -np.inf
    return top_k(s, kmax), secs


def _rank_by_recs(fn, uids, n_items: int, kmax: int, unscoreable_cols, seen):
    """A recommending system's batch: ask for enough items that ``kmax`` remain after
    dropping the banned ones, then drop them."""
    banned = np.zeros((len(uids), n_items), dtype=bool)  # (batch, n_items)
    if len(unscoreable_cols):
        banned[:, unscoreable_cols] = True
    if seen is not None:
        banned[seen] = True
    # A row of k_req distinct items holds at least k_req - n_banned >= kmax allowed ones.
    k_req = min(n_items, kmax + int(banned.sum(axis=1).max(initial=0)))
    t0 = time.perf_counter()
    raw = fn(uids, k_req)
    secs = time.perf_counter() - t0
    recs = M.as_topk(_check_recs(raw, len(uids), k_req, n_items))  # distinct items
    bad = (recs < 0) | np.take_along_axis(banned, np.maximum(recs, 0), axis=1)
    return _filter_recs(recs, bad, kmax), secs


def _target_notes(flags: dict, n_total: int, exclude_seen: bool) -> list[str]:
    """The notes a result carries about its targets: cold ones, unscoreable ones, and
    whether seen items were excluded."""
    notes = []
    n_cold = int(flags["cold"].sum())
    n_unsc = int(flags["unscoreable"].sum())
    if n_cold:
        notes.append(
            f"{n_cold} of {n_total} targets ({n_cold / n_total:.1%}) are cold items (no training "
            "rating); see segment('cold')"
        )
    if n_unsc:
        notes.append(
            f"{n_unsc} of {n_total} targets ({n_unsc / n_total:.1%}) are items this system cannot "
            "score: they count as misses; see segment('scoreable') and segment('unscoreable')"
        )
    if not exclude_seen:
        notes.append("seen items were NOT excluded (exclude_seen=False)")
    return notes


# --------------------------------------------------------------------------------------
# The shortcut we do not use, kept to show why
# --------------------------------------------------------------------------------------


def _sampled_ranks(
    system: Any, data: EvalData, n_negatives: int, seed: int, batch_size: int, can_score_items=None
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each target among its user's sampled negatives.

    Returns ``ranks`` (n_targets_total,) 0-based (-1 for a target the system gives -inf:
    never recommendable, never a hit) and ``negatives`` (n_users, n_negatives) columns.
    """
    if not (hasattr(system, "score") or (callable(system) and not hasattr(system, "recommend"))):
        raise TypeError("sampled metrics need a scoring system: score(user_ids) -> (batch, n_items)")
    _, fn = _resolve(system, "score")
    n_users, n_items = data.n_users, data.n_items
    mask = can_score_items if can_score_items is not None else getattr(system, "can_score_items", None)
    unscoreable = np.flatnonzero(~_to_numpy(mask).astype(bool)) if mask is not None else np.zeros(0, np.int64)
    ex_rows = np.repeat(np.arange(n_users, dtype=np.int64), data.n_history)
    t_rows = np.repeat(np.arange(n_users, dtype=np.int64), data.n_targets)
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(data.target_cols), dtype=np.int64)
    negatives = np.empty((n_users, n_negatives), dtype=np.int64)
    for start in range(0, n_users, batch_size):
        stop = min(start + batch_size, n_users)
        b = stop - start
        e0, e1 = data.exclude_ptr[start], data.exclude_ptr[stop]
        t0, t1 = data.target_ptr[start], data.target_ptr[stop]
        tr, tc = t_rows[t0:t1] - start, data.target_cols[t0:t1]
        # negatives: uniform without replacement among items neither seen nor a target
        keys = rng.random((b, n_items))  # same stream for any batch size
        keys[ex_rows[e0:e1] - start, data.exclude_cols[e0:e1]] = np.inf
        keys[tr, tc] = np.inf
        n_allowed = np.isfinite(keys).sum(axis=1)
        if (n_allowed < n_negatives).any():
            raise ValueError(
                f"a user has only {int(n_allowed.min())} unseen non-target items, fewer than "
                f"n_negatives={n_negatives}; sample fewer negatives"
            )
        neg = np.argpartition(keys, n_negatives - 1, axis=1)[:, :n_negatives]  # (b, n_neg)
        neg = np.sort(neg, axis=1)
        negatives[start:stop] = neg
        s = _check_scores(fn(data.user_ids[start:stop]), b, n_items)
        if len(unscoreable):
            s[:, unscoreable] = -np.inf
        s_t = s[tr, tc][:, None]  # (T_b, 1) each target's score
        s_n = np.take_along_axis(s, neg, axis=1)[tr]  # (T_b, n_neg) its user's negatives
        # the full protocol's tie-break: a tied negative ranks first if its column is lower
        before = (s_n > s_t) | ((s_n == s_t) & (neg[tr] < tc[:, None]))
        ranks[t0:t1] = np.where(s_t[:, 0] > -np.inf, before.sum(axis=1), -1)
    return ranks, negatives


def sampled_hit_rate(
    system: Any,
    data: EvalData,
    n_negatives: int = 100,
    k: int = 10,
    seed: int = 0,
    batch_size: int = 256,
    can_score_items=None,
) -> np.ndarray:
    """Sampled HR@k, the shortcut of many papers: per user, the share of their targets that rank
    in the top k among themselves plus ``n_negatives`` random items.

    Each user gets one uniform sample of items they have neither rated nor hold as a target,
    shared by their targets; ties break as in :func:`evaluate` (lower column first); a target
    scored -inf (or unscoreable) is a miss. A random scorer lands at k / (n_negatives + 1).
    Such numbers can reorder models [krichene2020sampled]: the book reports them only to show
    that; every comparison uses :func:`evaluate`.

    Args:
        system: as for :func:`evaluate`, with a ``score`` method or callable.
        data: the users and their targets (:class:`EvalData`).
        n_negatives: random items ranked against each target.
        k: the cut-off.
        seed: the sampling seed.
        batch_size: users scored at once.
        can_score_items: as for :func:`evaluate`.

    Returns:
        (n_users,) float values, in ``data``'s user order.
    """
    if not 1 <= k <= n_negatives:
        raise ValueError(f"need 1 <= k <= n_negatives, got k={k}, n_negatives={n_negatives}")
    ranks, _ = _sampled_ranks(system, data, int(n_negatives), seed, batch_size, can_score_items)
    hit = ((ranks >= 0) & (ranks < k)).astype(np.float64)
    owner = np.repeat(np.arange(data.n_users), data.n_targets)
    return np.bincount(owner, weights=hit, minlength=data.n_users) / data.n_targets
