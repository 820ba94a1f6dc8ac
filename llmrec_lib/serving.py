"""What serving adds on top of a retriever: a popularity prior, several candidate sources in
one list, and the rule that picks their knobs on validation (chapter 03).

* :class:`PopularityPrior` adds ``beta * log(1 + training count)`` to any system's scores: the
  cheap, after-the-fact fix for a model trained without a popularity-aware objective, and the
  serving-time counterpart of log-Q [yi2019sampling].
* :class:`WholeHistory` blends a dual encoder's prompt vector with the mean of the model's own
  vectors of every item the member liked: the prompt reads the newest titles that fit its token
  budget, the mean reads the whole history at the cost of one sum. The query stays one vector,
  so it serves from the same ANN index.
* :class:`MultiSource` fills one list from two retrievers with a fixed share of slots each.
  LinkedIn's LLM retrieval is one candidate source among several in production; a share chosen
  on validation is the simplest honest way to combine them.
* :class:`RankFusion` merges two retrievers by weighted reciprocal rank [cormack2009rrf]:
  every item scores ``1 / (k + its rank in the first) + weight / (k + its rank in the second)``,
  so each source votes on every slot instead of owning a fixed share of them.
* :class:`ColdOnly` restricts a retriever to the items nobody rated in training. As the second
  source of a :class:`MultiSource` it gives never-rated items slots of their own, which a
  count-based prior (or an ID model) can never give them.
* :class:`Cached` scores a source once per batch of users, so a grid of blends over the same
  two sources does not score them again for every value.
* :func:`choose_on_validation` evaluates a grid in a declared order of preference and keeps
  the first value within ``tol`` of the best, so the tie rule is fixed before anyone looks.

Every class here is a system in :func:`llmrec_lib.evaluate.evaluate`'s sense: ``score(user_ids)
-> (batch, n_items)``, ``can_score_items``, ``name``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["PopularityPrior", "ColdBonus", "WholeHistory", "MultiSource", "RankFusion", "ColdOnly", "Targeted", "long_tail_share", "Cached", "StoredSource", "stored_cut_check", "at_point",
           "choose_on_validation", "slot_pattern", "tune_fusion",
           "popularity_percentiles", "tune_prior", "tune_history", "tune_share"]


def _scores(system: Any, user_ids: np.ndarray) -> np.ndarray:
    s = system.score(user_ids)
    s = s.detach().cpu().numpy() if hasattr(s, "detach") else np.asarray(s)
    return s.astype(np.float32, copy=True)


def _counts(counts: Sequence[float]) -> np.ndarray:
    """Training counts as a float array, checked: one non-negative number per catalogue item."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("counts must be one non-negative number per catalogue item")
    return counts


def _rated(seen: Any) -> dict:
    """``seen`` (an :class:`llmrec_lib.evaluate.EvalData`, or None) as user id -> the columns
    that user rated before the stage; built once per merged list, not per scored batch."""
    return dict(zip(seen.user_ids.tolist(), seen.exclusions)) if seen is not None else {}


def _banned(first: Any, extra: dict, user_ids: np.ndarray) -> list[np.ndarray]:
    """Per user, the columns a merged list must never hold: the first source's ``histories``
    (the positives it reads) and ``extra`` (:func:`_rated`: everything that user rated before
    the stage). Removing them before merging keeps a seen movie from taking a slot or a rank
    that evaluation would later discard."""
    hist = getattr(first, "histories", None)
    empty = np.zeros(0, dtype=np.int64)
    out = []
    for u in np.asarray(user_ids).tolist():
        cols = [np.asarray(hist[u], dtype=np.int64)] if hist is not None else []
        cols.append(np.asarray(extra.get(u, empty), dtype=np.int64))
        out.append(np.unique(np.concatenate(cols)))
    return out


def _batch_key(user_ids: np.ndarray) -> bytes:
    """A batch of users as a dict key: the exact int64 ids, in order."""
    return np.asarray(user_ids, dtype=np.int64).tobytes()


class _Wrapper:
    """A system around ``self.system``: the wrapped system's ``can_score_items`` and
    ``histories`` (seen items, for :class:`MultiSource`) are passed on."""

    system: Any

    @property
    def can_score_items(self):
        """The wrapped system's ``can_score_items`` (which items it can score at all), passed on."""
        return getattr(self.system, "can_score_items", None)

    @property
    def histories(self):
        """The wrapped system's ``histories`` (seen items), passed on for :class:`MultiSource`."""
        return getattr(self.system, "histories", None)

    def _shifted(self, user_ids, per_item: np.ndarray) -> np.ndarray:
        """The wrapped system's scores plus ``per_item`` (one number per catalogue item)."""
        s = _scores(self.system, np.asarray(user_ids))
        if s.shape[1] != len(per_item):
            raise ValueError(f"system scores {s.shape[1]} items, counts cover {len(per_item)}")
        return s + per_item[None, :]


class PopularityPrior(_Wrapper):
    """``score(u, i) = system(u, i) + beta * log(1 + count_i)``.

    ``counts`` (n_items,) are training counts in catalogue order
    (:func:`llmrec_lib.text.popularity_counts`). A cold item's count is 0, so it gets no
    bonus: a large ``beta`` turns any model into the popularity list and drops cold items.
    """

    def __init__(self, system: Any, counts: Sequence[float], beta: float, name: str | None = None):
        counts = _counts(counts)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.system, self.beta = system, float(beta)
        self.prior = (self.beta * np.log1p(counts)).astype(np.float32)
        self.name = name or f"{getattr(system, 'name', 'system')} + {beta:g}·log(1+count)"

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) the wrapped system's scores plus the popularity bonus."""
        return self._shifted(user_ids, self.prior)


class ColdBonus(_Wrapper):
    """``score(u, i) = system(u, i) + gamma`` for every item nobody rated in training.

    The score-level answer to cold start, against :class:`ColdOnly` slots: one model at one
    operating point, where a never-rated movie competes with every rated one for each slot,
    so it reaches the list of a member whose scores favour it and of no one else. Wrapped
    around a :class:`PopularityPrior`, ``gamma`` is the prior a never-rated movie gets in
    place of ``beta * log(1) = 0``.
    """

    def __init__(self, system: Any, counts: Sequence[float], gamma: float, name: str | None = None):
        counts = _counts(counts)
        if not (counts == 0).any():
            raise ValueError("no catalogue item has a count of 0: there is nothing cold to lift")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.system, self.gamma = system, float(gamma)
        self.bonus = np.where(counts == 0, self.gamma, 0.0).astype(np.float32)
        self.name = name or f"{getattr(system, 'name', 'system')} + {gamma:g} if never rated"

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) the wrapped system's scores, never-rated items lifted."""
        return self._shifted(user_ids, self.bonus)


class WholeHistory:
    """``score(u, i) = cos(q_u, v_i)`` with ``q_u = normalise((1 - weight) * p_u + weight * m_u)``.

    ``p_u`` is the bound dual encoder's (unit) prompt vector of the member; ``m_u`` is the
    normalised mean of the same model's item vectors ``v`` over every positive in the member's
    history (:meth:`llmrec_lib.baselines.Histories.mean_vectors`, as in
    :class:`llmrec_lib.encoders.ItemMeanRetrieval`). ``weight`` 0 is the prompt alone,
    1 the item mean alone. The prompt holds the newest titles that fit its token budget (a median
    of about 6 at 128 tokens); the mean reads all of them, as item-kNN does.

    ``system`` is a bound :class:`llmrec_lib.encoders.PromptRetrieval` (what
    :func:`llmrec_lib.recipes.dual_encoder_system` returns): it has ``user_vectors``,
    ``histories`` and ``model.item_vectors``.
    """

    def __init__(self, system: Any, weight: float, name: str | None = None):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        for attr in ("user_vectors", "histories", "model"):
            if not hasattr(system, attr):
                raise TypeError(f"WholeHistory needs a bound dual-encoder system (it has no "
                                f"{attr!r}): pass what recipes.dual_encoder_system returns")
        self.system, self.weight, self.histories = system, float(weight), system.histories
        self.item_vectors = system.model.item_vectors  # unit rows, catalogue order
        self.name = name or f"{getattr(system, 'name', 'system')} + whole history ({weight:g})"

    @property
    def can_score_items(self):
        """The wrapped system's ``can_score_items``, passed on."""
        return getattr(self.system, "can_score_items", None)

    def user_vectors(self, user_ids) -> np.ndarray:
        """(len(user_ids), dim) unit query vectors: what the ANN index is queried with."""
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        prompt = np.asarray(self.system.user_vectors(user_ids), dtype=np.float32)
        q = (1.0 - self.weight) * prompt
        if self.weight > 0:
            q = q + self.weight * self.histories.mean_vectors(user_ids, self.item_vectors)
        return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) cosine of the blended query with every item."""
        return self.user_vectors(user_ids) @ self.item_vectors.T


class Cached(_Wrapper):
    """A system whose scores are computed once per batch of users, then read back.

    Tuning a blend evaluates the same two sources once per grid value, on the same users in
    the same batches: chapter 03 scores item-kNN and the LLM arm about fifty times over.
    Wrapped in ``Cached`` each source is scored once per batch, and every later call returns
    a copy of the stored rows (callers may write -inf into what they get). The key is the
    exact array of user ids, so a different batch is never served a stored one. At most
    ``max_batches`` batches are kept (the oldest is dropped first): a stage of 602 users is 3
    batches of :func:`llmrec_lib.evaluate.evaluate`'s default 256, 23 MB of float32 scores.
    """

    def __init__(self, system: Any, max_batches: int = 16):
        if max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self.system, self.max_batches = system, int(max_batches)
        self.name = getattr(system, "name", "system")
        self._store: dict[bytes, np.ndarray] = {}
        self.computed = 0  # batches actually scored by the wrapped system

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) float32: the wrapped system's scores, a fresh copy."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        key = _batch_key(user_ids)
        if key not in self._store:
            if len(self._store) >= self.max_batches:
                self._store.pop(next(iter(self._store)))
            self._store[key] = _scores(self.system, user_ids)
            self.computed += 1
        return self._store[key].copy()


def slot_pattern(n: int, share: float) -> np.ndarray:
    """Which list positions go to the second source, spread evenly.

    Any prefix of length K holds ``floor(share * K)`` such slots, so the share holds at every K.

    Args:
        n: the list length.
        share: the second source's share of the slots, in [0, 1].

    Returns:
        (n,) bool: True where list position p goes to the second source.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    p = np.arange(1, n + 1)
    return np.floor(p * share + 1e-9) > np.floor((p - 1) * share + 1e-9)


class MultiSource:
    """One list from two sources: ``share`` of the slots from ``second``, the rest from
    ``first``, each source in its own order, an item already placed skipped.

    Both sources are bound systems of the same stage; the first one's ``histories`` (the
    user's positives) and, if ``seen`` (the stage's :class:`llmrec_lib.evaluate.EvalData`) is
    given, every movie the user rated before the stage are removed from both lists before
    merging, so a seen item never takes a slot. ``depth`` items are drawn from each source;
    the merged list's scores decrease with position, and items beyond it are -inf (never
    recommended).
    """

    def __init__(self, first: Any, second: Any, share: float, depth: int = 300,
                 name: str | None = None, seen: Any = None):
        slot_pattern(1, share)  # validates share
        self.first, self.second, self.share, self.depth = first, second, float(share), int(depth)
        self.rated = _rated(seen)
        self.name = name or (f"{getattr(first, 'name', 'first')} + "
                             f"{getattr(second, 'name', 'second')} ({share:.0%} of slots)")

    @property
    def histories(self):
        """The first source's ``histories`` (the user's seen items), passed on so that a
        :class:`MultiSource` can itself be the first source of another one."""
        return getattr(self.first, "histories", None)

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) scores that rank the merged list first, the rest at -inf."""
        user_ids = np.asarray(user_ids)
        a, b = _scores(self.first, user_ids), _scores(self.second, user_ids)
        for row, cols in enumerate(_banned(self.first, self.rated, user_ids)):
            a[row, cols] = b[row, cols] = -np.inf
        from llmrec_lib.evaluate import top_k

        depth = min(self.depth, a.shape[1])
        # each source's best ``depth`` columns, ties to the lower column (a stable sort's
        # order), -1 where the score is -inf: a partition per row instead of a full sort
        top_a, top_b = top_k(a, depth).tolist(), top_k(b, depth).tolist()
        pattern = slot_pattern(2 * depth, self.share).tolist()
        out = np.full(a.shape, -np.inf, dtype=np.float32)
        for row in range(len(user_ids)):
            lists = [[c for c in top_a[row] if c >= 0], [c for c in top_b[row] if c >= 0]]
            ptr, placed, merged = [0, 0], set(), []
            for use_b in pattern:
                src = int(use_b)
                if ptr[src] >= len(lists[src]):
                    src = 1 - src  # this source is exhausted: the other fills the slot
                while ptr[src] < len(lists[src]) and lists[src][ptr[src]] in placed:
                    ptr[src] += 1
                if ptr[src] >= len(lists[src]):
                    if all(ptr[s] >= len(lists[s]) for s in (0, 1)):
                        break
                    continue
                c = lists[src][ptr[src]]
                ptr[src] += 1
                placed.add(c)
                merged.append(c)
            out[row, merged] = np.arange(len(merged), 0, -1, dtype=np.float32)
        return out


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks per row, ties sharing their best rank (1 + how many items score higher)."""
    ranks = np.empty(scores.shape, dtype=np.float64)
    for row, s in enumerate(scores):
        ranks[row] = np.searchsorted(np.sort(-s), -s, side="left") + 1
    return ranks


class RankFusion:
    """Weighted reciprocal-rank fusion of two sources [cormack2009rrf]:
    ``score(u, i) = 1 / (k + r_first(u, i)) + weight / (k + r_second(u, i))``.

    Ranks start at 1 and tied scores share their best rank, so a source that cannot tell its
    tail items apart (item-kNN scores most of the catalogue 0) leaves their order to the other.
    Only ranks are used, so the sources' score scales never need calibrating. ``k`` damps the
    head: 60 is the value of the original paper, kept fixed here. ``depth``: each source votes
    for its top ``depth`` items only, as a production source returns a fixed number of
    candidates (None: the whole catalogue; chapter 03 measures what the cut costs). The first
    source's ``histories`` (the user's positives) and, if ``seen`` (the stage's
    :class:`llmrec_lib.evaluate.EvalData`) is given, every movie the user rated before the
    stage are removed from both rankings and score -inf, so they push no other item's rank
    down. ``weight`` 0 is the first source's own order.
    ``votes_cache``: a dict shared by fusions of the same sources, stage, ``k`` and ``depth``
    that differ only in ``weight`` (what :func:`tune_fusion` builds), so each batch's votes are
    computed once; None computes them at every call.
    """

    def __init__(self, first: Any, second: Any, weight: float, k: float = 60.0,
                 depth: int | None = None, name: str | None = None, seen: Any = None,
                 votes_cache: dict | None = None):
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if depth is not None and depth < 1:
            raise ValueError(f"depth must be >= 1 or None, got {depth}")
        self.first, self.second, self.weight, self.k = first, second, float(weight), float(k)
        self.depth, self.rated = depth, _rated(seen)
        # None, or batch -> both sources' votes: tune_fusion gives every weight of its grid one
        # shared dict (same sources, stage, k and depth), since only the weight changes the sum
        self.votes_cache = votes_cache
        self.name = name or (f"{getattr(first, 'name', 'first')} + "
                             f"{getattr(second, 'name', 'second')} (rank fusion, {weight:g})")

    @property
    def histories(self):
        """The first source's ``histories``, passed on."""
        return getattr(self.first, "histories", None)

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) fused scores; seen items -inf."""
        user_ids = np.asarray(user_ids)
        cache = {} if self.votes_cache is None else self.votes_cache
        key = _batch_key(user_ids)
        if key not in cache:
            a, b = _scores(self.first, user_ids), _scores(self.second, user_ids)
            if a.shape != b.shape:
                raise ValueError(f"the sources score {a.shape} and {b.shape}: same users and items needed")
            for row, cols in enumerate(_banned(self.first, self.rated, user_ids)):
                a[row, cols] = b[row, cols] = -np.inf
            votes_a = self._votes(a)
            votes_a[~np.isfinite(a)] = -np.inf  # seen or unscoreable: never recommended
            cache[key] = (votes_a, self._votes(b))
        votes_a, votes_b = cache[key]
        return (votes_a + self.weight * votes_b).astype(np.float32)

    def _votes(self, scores: np.ndarray) -> np.ndarray:
        """1 / (k + rank) for each item a source ranks within ``depth``, else 0."""
        r = _ranks(scores)
        votes = 1.0 / (self.k + r)
        votes[~np.isfinite(scores)] = 0.0  # seen, or beyond a stored list: no vote
        if self.depth is not None:
            votes[r > self.depth] = 0.0
        return votes


def at_point(system: Any, counts: Sequence[float], point: tuple[float, float],
             name: str | None = None) -> "PopularityPrior":
    """Chapter 03's serving arm at ``point = (weight, beta)``: the prompt blended with the
    whole-history mean (:class:`WholeHistory`), plus ``beta * log(1 + count)``
    (:class:`PopularityPrior`).

    Args:
        system: a bound dual-encoder system (:func:`llmrec_lib.recipes.dual_encoder_system`).
        counts: training counts in catalogue order.
        point: the whole-history weight and the prior's beta.
        name: the system's name in results (None: the prior's default).

    Returns:
        The :class:`PopularityPrior` over the :class:`WholeHistory` blend.
    """
    return PopularityPrior(WholeHistory(system, point[0]), counts, point[1], name=name)


class StoredSource:
    """A stored top-K list (:class:`llmrec_lib.evaluate.StoredRanking`) as a source to merge:
    the item at rank r scores K - r, and an item past the list scores -inf, so
    :class:`RankFusion` gives it no vote and :class:`MultiSource` never reaches it (a share of
    at most K slots). The lists already leave out what the user rated before the stage.
    """

    def __init__(self, ranking: Any, n_items: int, name: str | None = None):
        self.ranking, self.n_items = ranking, int(n_items)
        self.name = name or getattr(ranking, "name", "stored list")

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) scores: K - rank on the stored list, -inf elsewhere."""
        depth = self.ranking.depth
        cols = self.ranking.recommend(np.asarray(user_ids), depth)  # (B, K), -1 past a list
        out = np.full((len(cols), self.n_items), -np.inf, dtype=np.float32)
        rows, ranks = np.nonzero(cols >= 0)
        out[rows, cols[rows, ranks]] = depth - ranks
        return out


def stored_cut_check(llm: Any, first: Any, weight: float, data: Any, fused: Any,
                     depth: int) -> dict:
    """What reading ``llm`` from a stored top-``depth`` list changes in its rank fusion with
    ``first``: the list is saved and read back as a :class:`StoredSource`, exactly as a
    seed's committed list is, and fused again.

    Args:
        llm: the live source, a bound system of ``data``'s stage.
        first: the other source (item-kNN in chapter 03).
        weight: the fusion's weight on ``llm``.
        data: the stage's :class:`llmrec_lib.evaluate.EvalData`.
        fused: the :class:`llmrec_lib.evaluate.EvalResult` of the fusion with every rank.
        depth: the ranks stored.

    Returns:
        ``{"same users": share of users whose Recall@50 is unchanged, "mean diff": the cut's
        mean Recall@50 minus the full fusion's}``.
    """
    import tempfile
    from pathlib import Path

    from llmrec_lib import evaluate

    top = evaluate.evaluate(llm, data, ks=(depth,))
    with tempfile.TemporaryDirectory() as tmp:
        path = evaluate.save_ranking(top, data.item_ids, Path(tmp) / "top.npz")
        source = StoredSource(evaluate.StoredRanking(path, data.item_ids), len(data.item_ids))
        cut = evaluate.evaluate(RankFusion(first, source, weight, seen=data), data, ks=(50,))
    full = fused.per_user.set_index("user_id")["recall@50"]
    read = cut.per_user.set_index("user_id").loc[full.index, "recall@50"]
    return {"same users": round(float(np.isclose(full, read).mean()), 4),
            "mean diff": round(float((read - full).mean()), 5)}


class Targeted(_Wrapper):
    """``targeted``'s scores for the users in ``user_ids``, ``system``'s for everyone else.

    The way to give a source to some users only: for example cold-item slots
    (:class:`MultiSource` with :class:`ColdOnly`) to the users whose history reaches into the
    long tail (:func:`long_tail_share`), the standard list to the rest. Both systems must
    score the same catalogue for the same stage.
    """

    def __init__(self, system: Any, targeted: Any, user_ids, name: str | None = None):
        self.system, self.targeted = system, targeted
        self.users = np.unique(np.asarray(user_ids, dtype=np.int64))
        self.name = name or f"{getattr(system, 'name', 'system')}, targeted for {len(self.users)} users"

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items): the targeted system's rows for the chosen users."""
        user_ids = np.asarray(user_ids)
        out = _scores(self.system, user_ids)
        chosen = np.isin(user_ids, self.users)
        if chosen.any():
            rows = _scores(self.targeted, user_ids[chosen])
            if rows.shape[1] != out.shape[1]:
                raise ValueError(f"the targeted system scores {rows.shape[1]} items, the other {out.shape[1]}")
            out[chosen] = rows
        return out


def long_tail_share(history: pd.DataFrame, counts: pd.Series, max_count: int = 3) -> pd.Series:
    """Per user, the share of the movies in their history that at most ``max_count`` training
    ratings mention: how far into the long tail the user reads.

    Args:
        history: the ratings a stage may read (``split.history(stage)``), all of them.
        counts: training ratings per item id (:func:`llmrec_lib.text.popularity_counts`); an
            id it lacks counts 0.
        max_count: the most training ratings a long-tail movie has.

    Returns:
        user id -> share in [0, 1], for every user in ``history``.
    """
    if not {"user_id", "item_id"} <= set(history.columns):
        raise ValueError("history needs user_id and item_id columns: pass split.history(stage)")
    if max_count < 0:
        raise ValueError(f"max_count must be >= 0, got {max_count}")
    n = history["item_id"].map(counts).fillna(0)
    return (n <= max_count).groupby(history["user_id"]).mean().rename("long-tail share")


class ColdOnly:
    """A system's scores on the items nobody rated in training; every other item is -inf.

    Within the cold items the order is the system's own, and any count-based prior adds the
    same ``beta * log(1) = 0`` to each of them, so a :class:`PopularityPrior` may be passed
    as it is. ``counts`` are the training counts in catalogue order, as for the prior.
    """

    def __init__(self, system: Any, counts: Sequence[float], name: str | None = None):
        counts = _counts(counts)
        if not (counts == 0).any():
            raise ValueError("no catalogue item has a count of 0: there is nothing cold to serve")
        self.system, self.warm = system, counts > 0
        self.name = name or f"{getattr(system, 'name', 'system')}, cold items only"

    @property
    def histories(self):
        """The wrapped system's ``histories``, passed on."""
        return getattr(self.system, "histories", None)

    def score(self, user_ids) -> np.ndarray:
        """(len(user_ids), n_items) the system's scores, -inf on every warm item."""
        s = _scores(self.system, np.asarray(user_ids))
        if s.shape[1] != len(self.warm):
            raise ValueError(f"system scores {s.shape[1]} items, counts cover {len(self.warm)}")
        s[:, self.warm] = -np.inf
        return s


def choose_on_validation(grid: Sequence[Any], metric_of: Callable[[Any], float], tol: float = 0.0,
                         ) -> tuple[Any, pd.DataFrame]:
    """Keep the **first** value of ``grid`` whose validation metric is within ``tol`` of the best.

    The grid's order is the order of preference, declared before looking at the metric.

    Args:
        grid: the candidate values, most preferred first.
        metric_of: value -> its validation metric (higher is better).
        tol: how far below the best a value may be and still be chosen.

    Returns:
        (the chosen value, a table of every value's metric).
    """
    grid = list(grid)
    if not grid:
        raise ValueError("the grid is empty")
    values = [float(metric_of(g)) for g in grid]
    best = max(values)
    chosen = next(g for g, v in zip(grid, values) if v >= best - tol)
    table = pd.DataFrame({"value": grid, "metric": values, "chosen": [g == chosen for g in grid]})
    return chosen, table


def popularity_percentiles(cols: np.ndarray, counts: Sequence[float]) -> np.ndarray:
    """Popularity percentile of each catalogue column in ``cols`` (0 = least rated, 1 = most
    rated item of the catalogue).

    Args:
        cols: catalogue columns (any shape); -1 entries, empty slots, are dropped.
        counts: training counts, one per catalogue column.

    Returns:
        A flat float array, one percentile per non-empty entry of ``cols``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    ranks = pd.Series(counts).rank(method="average", pct=True).to_numpy()
    cols = np.asarray(cols).ravel()
    return ranks[cols[cols >= 0]]


def tune_prior(valid_system: Any, valid_data, counts, grid: Sequence[float], metric: str = "recall@50",
               tol: float = 0.002) -> tuple[float, pd.DataFrame]:
    """Choose :class:`PopularityPrior`'s ``beta`` on validation (:func:`choose_on_validation`).

    Args:
        valid_system: the bound system of the validation stage.
        valid_data: the validation :class:`llmrec_lib.evaluate.EvalData`.
        counts: training counts in catalogue order.
        grid: the ``beta`` values, order = preference (smallest first).
        metric: the metric compared, a column of the evaluation.
        tol: how far below the best a value may be and still be chosen.

    Returns:
        (the chosen beta, a table of every value's metric).
    """
    return _choose_system(lambda beta: PopularityPrior(valid_system, counts, beta), grid,
                          valid_data, metric, tol)


def tune_history(valid_system: Any, valid_data, counts, weights: Sequence[float], betas: Sequence[float],
                 metric: str = "recall@50", tol: float = 0.002) -> tuple[tuple[float, float], pd.DataFrame]:
    """Choose :class:`WholeHistory`'s ``weight`` and :class:`PopularityPrior`'s ``beta`` together
    on validation (:func:`choose_on_validation`).

    The grid is every ``(weight, beta)``, weights outermost: order = preference, so less of the
    history mean wins a tie first, then the smaller prior.

    Args:
        valid_system: the bound dual encoder of the validation stage.
        valid_data: the validation :class:`llmrec_lib.evaluate.EvalData`.
        counts: training counts in catalogue order.
        weights: the blend weights, most preferred first.
        betas: the prior's ``beta`` values, most preferred first.
        metric: the metric compared, a column of the evaluation.
        tol: how far below the best a value may be and still be chosen.

    Returns:
        ((weight, beta) chosen, a table with columns weight, beta, metric, chosen).
    """
    blends = {w: WholeHistory(valid_system, w) for w in weights}
    grid = [(float(w), float(b)) for w in weights for b in betas]
    chosen, table = _choose_system(lambda p: PopularityPrior(blends[p[0]], counts, p[1]), grid,
                                   valid_data, metric, tol)
    table.insert(0, "beta", [b for _, b in grid])
    table.insert(0, "weight", [w for w, _ in grid])
    return chosen, table.drop(columns="value")


def tune_share(first_valid: Any, second_valid: Any, valid_data, grid: Sequence[float],
               metric: str = "recall@50", tol: float = 0.002) -> tuple[float, pd.DataFrame]:
    """Choose :class:`MultiSource`'s ``share`` on validation, with the same rule as
    :func:`tune_prior` (grid order = preference).

    Args:
        first_valid: the first source, bound to the validation stage.
        second_valid: the second source, bound to the validation stage.
        valid_data: the validation :class:`llmrec_lib.evaluate.EvalData`.
        grid: the ``share`` values, order = preference.
        metric: the metric compared, a column of the evaluation.
        tol: how far below the best a value may be and still be chosen.

    Returns:
        (the chosen share, a table of every value's metric).
    """
    first, second = Cached(first_valid), Cached(second_valid)  # scored once, not per share
    return _choose_system(lambda share: MultiSource(first, second, share, seen=valid_data),
                          grid, valid_data, metric, tol)


def tune_fusion(first_valid: Any, second_valid: Any, valid_data, grid: Sequence[float],
                k: float = 60.0, depth: int | None = None, metric: str = "recall@50",
                tol: float = 0.002) -> tuple[float, pd.DataFrame]:
    """Choose :class:`RankFusion`'s ``weight`` on validation, with the same rule as
    :func:`tune_share` (grid order = preference).

    Args:
        first_valid: the first source, bound to the validation stage.
        second_valid: the second source, bound to the validation stage.
        valid_data: the validation :class:`llmrec_lib.evaluate.EvalData`.
        grid: the second source's weights, order = preference.
        k: the fusion's rank offset, fixed (not tuned).
        depth: how many of each source's items get a vote (None: all).
        metric: the metric compared, a column of the evaluation.
        tol: how far below the best a value may be and still be chosen.

    Returns:
        (the chosen weight, a table of every value's metric).
    """
    first, second = Cached(first_valid), Cached(second_valid)  # scored once, not per weight
    shared: dict = {}  # every weight's fusion reads the same votes (RankFusion.votes_cache)
    return _choose_system(
        lambda w: RankFusion(first, second, w, k=k, depth=depth, seen=valid_data, votes_cache=shared),
        grid, valid_data, metric, tol)


def _choose_system(make: Callable[[Any], Any], grid: Sequence[Any], valid_data, metric: str,
                   tol: float) -> tuple[Any, pd.DataFrame]:
    """:func:`choose_on_validation` over the systems ``make(value)`` builds, scored on
    ``metric`` (``"recall@50"``: its K is the only depth evaluated)."""
    from llmrec_lib import evaluate

    k = int(metric.split("@")[1])
    return choose_on_validation(
        grid, lambda v: evaluate.evaluate(make(v), valid_data, ks=(k,)).mean(metric), tol)
