"""The teacher: a transparent miner for RecGPT's large reasoning model (chapters 06, 07).

RecGPT distils LLM_UI and LLM_IT from a large reasoning model's answers. The book's teacher is
a rule anyone can read: :func:`teacher_interests` scores each item-tag phrase by how much more
often it appears in a user's likes than in everyone's (:func:`phrase_base_rates`) and keeps a
diverse few; :func:`target_tags` gives the tags of the items a user liked next (chapter 07's
training targets); :func:`popular_tags` and :func:`recent_tags` are the non-personal and the
rule-based baselines of chapter 07, and :func:`weighted_tags` the rule with a recency decay
and a population prior, tuned on validation (how much room the rule leaves).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data
from llmrec_lib.recgpt.tags import item_category
from llmrec_lib.recgpt.vocabulary import tag_category


def phrase_base_rates(positives: pd.DataFrame, itags: pd.Series) -> pd.Series:
    """Share of the positive ratings in ``positives`` whose item carries each tag phrase
    (pass training positives only). The teacher's "what everybody likes" reference.

    Args:
        positives: positive ratings (item_id), from training only.
        itags: item_id -> the item's tag phrases (:func:`item_tags`).

    Returns:
        phrase -> its share of the positives, in [0, 1].
    """
    data.require_columns(positives, ("item_id",), "positives")
    counts: dict[str, int] = {}
    per_item = positives["item_id"].value_counts()
    for item_id, n in per_item.items():
        for p in itags.get(item_id, ()):
            counts[p] = counts.get(p, 0) + int(n)
    return (pd.Series(counts, dtype=np.float64) / max(len(positives), 1)).rename("base_rate").sort_index()


def _diverse(ranked: Iterable[str], n: int, max_per_category: int) -> list[str]:
    """The first ``n`` phrases of ``ranked``, at most ``max_per_category`` per head category
    (unmapped phrases count as one category of their own), repeats skipped."""
    out: list[str] = []
    per_cat: dict[str, int] = {}
    for p in ranked:
        if p in out:
            continue
        c = tag_category(p)
        if per_cat.get(c, 0) >= max_per_category:
            continue
        per_cat[c] = per_cat.get(c, 0) + 1
        out.append(p)
        if len(out) == n:
            break
    return out


def teacher_interests(items: Sequence[int], itags: pd.Series, base_rate: pd.Series, *, n: int = 5,
                      min_support: int = 3, max_per_category: int = 2) -> list[str]:
    """RecGPT's LLM_UI teacher, replaced by counting: the user's interests are the tag
    phrases their liked items carry *more often than everybody's do*.

    For each phrase p on the user's liked ``items`` (ids; each item counted once):
    ``score(p) = count(p) - len(items) * base_rate(p)``, the excess over what an average user
    with as many likes would show. Phrases with ``count >= min_support`` are ranked by score
    (then count, then alphabetically) and picked greedily with at most ``max_per_category``
    per category (the paper balances its tag data the same way); if fewer than ``n`` qualify
    the rest are filled by count alone. Deterministic; every interest is grounded in at least
    one liked item by construction.

    Args:
        items: the user's liked item ids, from before the target time.
        itags: item_id -> the item's tag phrases.
        base_rate: phrase -> its share of all positives (:func:`phrase_base_rates`).
        n: how many interests to return.
        min_support: the fewest liked items a phrase must be on to rank by excess.
        max_per_category: at most this many phrases of one category.

    Returns:
        Up to ``n`` phrases, best first.
    """
    items = list(dict.fromkeys(int(i) for i in items))
    counts: dict[str, int] = {}
    for i in items:
        for p in itags.get(i, ()):
            counts[p] = counts.get(p, 0) + 1
    if not counts:
        return []
    rows = [(p, c, c - len(items) * float(base_rate.get(p, 0.0))) for p, c in counts.items()]
    strong = sorted([r for r in rows if r[1] >= min_support], key=lambda r: (-r[2], -r[1], r[0]))
    picked = _diverse([r[0] for r in strong], n, max_per_category)
    if len(picked) < n:
        rest = sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))
        picked = _diverse(picked + [r[0] for r in rest], n, max_per_category)
    return picked


def target_tags(next_items: Sequence[int], history_items: Sequence[int], itags: pd.Series, *,
                n: int = 6, max_per_category: int = 2) -> list[str]:
    """LLM_IT's training target: tags of the items the user *actually liked next* (RecGPT
    trains on the titles of clicked items). Phrases of ``next_items`` ranked by how many of
    them carry it, then by how often the earlier ``history_items`` did (the phrase fits the
    user), then alphabetically; at most ``max_per_category`` per category.

    Args:
        next_items: the items the user liked next (the target window).
        history_items: the items the user liked before.
        itags: item_id -> the item's tag phrases.
        n: how many tags to return.
        max_per_category: at most this many phrases of one category.

    Returns:
        Up to ``n`` phrases, best first.
    """
    nxt: dict[str, int] = {}
    for i in dict.fromkeys(int(x) for x in next_items):
        for p in itags.get(i, ()):
            nxt[p] = nxt.get(p, 0) + 1
    hist: dict[str, int] = {}
    for i in dict.fromkeys(int(x) for x in history_items):
        for p in itags.get(i, ()):
            hist[p] = hist.get(p, 0) + 1
    ranked = sorted(nxt, key=lambda p: (-nxt[p], -hist.get(p, 0), p))
    return _diverse(ranked, n, max_per_category)


def category_base_rates(positives: pd.DataFrame, movies: pd.DataFrame) -> pd.Series:
    """Share of the positive ratings in ``positives`` whose item has each category
    (:func:`item_category`): the population's base rates, commonest first (ties by name).

    Args:
        positives: positive ratings (item_id), from training only.
        movies: item_id and genres, as ``ml.movies``.

    Returns:
        Category -> share (summing to 1), commonest first; empty when no positive has one.
    """
    data.require_columns(positives, ("item_id",), "positives")
    genres = movies.set_index("item_id")["genres"]
    cat_count: dict[str, int] = {}
    for item_id, k in positives["item_id"].value_counts().items():
        c = item_category(genres[item_id])
        if c is not None:
            cat_count[c] = cat_count.get(c, 0) + int(k)
    order = sorted(cat_count, key=lambda c: (-cat_count[c], c))
    counts = pd.Series([cat_count[c] for c in order], index=order, dtype=float)
    return counts / counts.sum() if len(counts) else counts


def popular_tags(positives: pd.DataFrame, movies: pd.DataFrame, itags: pd.Series, *, n: int = 6) -> list[str]:
    """The same tags for everyone (no LLM, no user): the ``n`` categories most often the
    category (:func:`item_category`) of a liked item in ``positives`` (training only), each
    as its most frequent phrase there. HR@K's popularity baseline.

    Args:
        positives: positive ratings (item_id), from training only.
        movies: item_id and genres, as ``ml.movies``.
        itags: item_id -> the item's tag phrases.
        n: how many tags to return.

    Returns:
        ``n`` phrases (fewer when there are fewer categories), commonest category first.
    """
    rates = category_base_rates(positives, movies)
    genres = movies.set_index("item_id")["genres"]
    phrase_count: dict[str, dict[str, int]] = {}
    for item_id, k in positives["item_id"].value_counts().items():
        c = item_category(genres[item_id])
        for p in itags.get(item_id, ()):
            if c is not None and tag_category(p) == c:
                phrase_count.setdefault(c, {})[p] = phrase_count.setdefault(c, {}).get(p, 0) + int(k)
    out = []
    for c in rates.index:
        if phrase_count.get(c):
            out.append(min(phrase_count[c], key=lambda p: (-phrase_count[c][p], p)))
        if len(out) == n:
            break
    return out


def _by_category(phrase_score: dict, cat_score: dict, n: int, max_per_category: int) -> list[str]:
    """Categories in order of ``cat_score``; round r takes each category's r-th best phrase
    (by ``phrase_score``), so the first tags cover as many categories as possible."""
    per: dict[str, list[str]] = {}
    for p in sorted(phrase_score, key=lambda p: (-phrase_score[p], p)):
        per.setdefault(tag_category(p), []).append(p)
    cats = sorted(per, key=lambda c: (-cat_score.get(c, 0.0), c))
    out: list[str] = []
    for r in range(max_per_category):
        for c in cats:
            if len(per[c]) > r:
                out.append(per[c][r])
                if len(out) == n:
                    return out
    return out


def recent_tags(items: Sequence[int], itags: pd.Series | Mapping, *, n: int = 6, last: int = 50,
                max_per_category: int = 2) -> list[str]:
    """A rule-based tag predictor (no LLM): the categories of the user's ``last`` liked
    items, most frequent first (newer items break ties), each as its most frequent phrase
    there; a second phrase per category only once every category has one. The baseline any
    tag model has to beat.

    Args:
        items: the user's liked item ids, oldest first.
        itags: item_id -> the item's tag phrases (a dict is several times faster to read
            than a Series, for callers that tag many histories).
        n: how many tags to return.
        last: how many of the latest liked items to read.
        max_per_category: at most this many phrases of one category.

    Returns:
        Up to ``n`` phrases, best first.
    """
    items = [int(i) for i in items][-last:]
    phrase_score: dict[str, float] = {}
    cat_score: dict[str, float] = {}
    for rank, i in enumerate(items):
        w = 1.0 + rank * 1e-6  # a count; recency only breaks ties
        for p in itags.get(i, ()):
            phrase_score[p] = phrase_score.get(p, 0.0) + w
        if len(itags.get(i, ())):
            c = tag_category(itags[i][0])
            cat_score[c] = cat_score.get(c, 0.0) + w
    return _by_category(phrase_score, cat_score, n, max_per_category)


def category_scores(items: Sequence[int], itags: pd.Series, base_rates: pd.Series, *, last: int | None = 50,
                    half_life: float | None = None, shrink: float = 0.0) -> dict[str, float]:
    """The score :func:`weighted_tags` ranks categories by, for every category it would name:
    the decayed count of the ``last`` liked items in it, plus ``shrink`` x the history's total
    weight (at least 1) x its population share. Chapter 07's count head reads these numbers.

    Args:
        items: the user's liked item ids, oldest first.
        itags: item_id -> the item's tag phrases (the first names its category).
        base_rates: category -> population share (:func:`category_base_rates`).
        last: how many of the latest liked items to read; None reads all.
        half_life: the age, in liked items, at which an item's weight halves; None: no decay.
        shrink: the prior's weight, relative to the history's total weight (>= 0).

    Returns:
        category -> score (categories with no liked item and no prior are absent).
    """
    return _weighted(items, itags, base_rates, last, half_life, shrink)[0]


def _weighted(items, itags, base_rates, last, half_life, shrink):
    """(category score, category tie-break, phrase weight) of :func:`weighted_tags`."""
    if last is not None and last < 1:
        raise ValueError(f"last must be >= 1 or None, got {last}")
    if half_life is not None and not half_life > 0:
        raise ValueError(f"half_life must be > 0 or None, got {half_life}")
    if not shrink >= 0:
        raise ValueError(f"shrink must be >= 0, got {shrink}")
    items = [int(i) for i in items]
    items = items[-last:] if last is not None else items
    cat_w: dict[str, float] = {}
    phrase_w: dict[str, float] = {}
    tie: dict[str, float] = {}  # newer breaks ties: the sum of positions, as the rule
    for rank, i in enumerate(items):
        phrases = itags.get(i, ())
        if not len(phrases):
            continue
        age = len(items) - 1 - rank
        w = 1.0 if half_life is None else 0.5 ** (age / half_life)
        c = tag_category(phrases[0])
        cat_w[c] = cat_w.get(c, 0.0) + w
        tie[c] = tie.get(c, 0.0) + rank
        for p in phrases:
            if tag_category(p) == c:
                phrase_w[p] = phrase_w.get(p, 0.0) + w
    total = sum(cat_w.values())
    score = dict(cat_w)
    if shrink > 0:
        for c, share in base_rates.items():
            score[c] = score.get(c, 0.0) + shrink * max(total, 1.0) * float(share)
    return score, tie, phrase_w


def weighted_tags(items: Sequence[int], itags: pd.Series, base_rates: pd.Series, *, n: int = 6,
                  last: int | None = 50, half_life: float | None = None, shrink: float = 0.0) -> list[str]:
    """The counting rule with two knobs, one tag per category: the rule anything that reads
    only the history has to beat, tuned (chapter 07 measures how far it gets above
    :func:`recent_tags`).

    Each of the ``last`` liked items (all of them when None) adds ``0.5 ** (age /
    half_life)`` to its category (age 0 = the newest; every item adds 1 when ``half_life`` is
    None, and newer items break ties, as in :func:`recent_tags`). Then every category gets
    ``shrink`` x the history's total weight (at least 1) x its population share
    (``base_rates``, from :func:`category_base_rates`): a prior that fills the slots a short
    history leaves empty and pulls a thin history toward what everybody likes. With
    ``half_life=None`` and ``shrink=0`` it names the categories :func:`recent_tags` names.

    Args:
        items: the user's liked item ids, oldest first.
        itags: item_id -> the item's tag phrases (the first names its category).
        base_rates: category -> population share (:func:`category_base_rates`).
        n: how many tags (categories) to return.
        last: how many of the latest liked items to read; None reads all.
        half_life: the age, in liked items, at which an item's weight halves; None: no decay.
        shrink: the prior's weight, relative to the history's total weight (>= 0).

    Returns:
        Up to ``n`` phrases, one per category, best first: the category's most weighted
        phrase in the history, or the category's name when only the prior put it there.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    score, tie, phrase_w = _weighted(items, itags, base_rates, last, half_life, shrink)
    cats = sorted(score, key=lambda c: (-score[c], -tie.get(c, -1.0), c))[:n]
    out = []
    for c in cats:
        own = [p for p in phrase_w if tag_category(p) == c]
        out.append(min(own, key=lambda p: (-phrase_w[p], p)) if own else c.lower())
    return out
