"""Behaviour compression (RecGPT section 3), chapter 06.

RecGPT fits a lifelong history into an LLM's context in two steps: *item-level* (keep reliable
behaviours, shorten each item's text) and *sequence-level* (group behaviours by time and by
item, so a repeated item or a burst of one genre costs one line). This module does both for
MovieLens ratings: :func:`reliable_behaviours`, :func:`short_item_texts`,
:func:`compressed_history_texts` and :func:`history_prompt_text` (a history cut to a token
budget), and :func:`compression_stats` measures what each step saves.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data
from llmrec_lib.recgpt.tags import item_categories
from llmrec_lib.recgpt.vocabulary import GENRE_CORE

#: RecGPT keeps "reliable" behaviours (purchase, cart, favourite...) and drops plain clicks.
#: The book's analogue: a rating of 4 or more is "liked", 2 or less "disliked", and the
#: lukewarm middle (2.5-3.5), the closest thing MovieLens has to a click without commitment,
#: is dropped.
LIKED_MIN = data.POSITIVE_MIN  # the book's one pair of thresholds (data.py), under RecGPT's
DISLIKED_MAX = data.NEGATIVE_MAX  # words: a like is a positive, a dislike a negative


def reliable_behaviours(ratings: pd.DataFrame, liked_min: float = LIKED_MIN,
                        disliked_max: float = DISLIKED_MAX) -> pd.DataFrame:
    """The ratings that say something clear: liked (>= ``liked_min``) or disliked
    (<= ``disliked_max``), with a ``liked`` bool column; the lukewarm middle is dropped.

    Args:
        ratings: ratings with the columns of :data:`data.RATING_COLUMNS`.
        liked_min: the lowest rating that counts as liked.
        disliked_max: the highest rating that counts as disliked (below ``liked_min``).

    Returns:
        The kept ratings, a copy, with a ``liked`` column.
    """
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    if disliked_max >= liked_min:
        raise ValueError(f"disliked_max ({disliked_max}) must be below liked_min ({liked_min})")
    keep = (ratings["rating"] >= liked_min) | (ratings["rating"] <= disliked_max)
    out = ratings[keep].copy()
    out["liked"] = out["rating"] >= liked_min
    return out.reset_index(drop=True)


def raw_item_texts(movies: pd.DataFrame, tags: pd.DataFrame | None = None, k_tags: int = 5) -> pd.Series:
    """The uncompressed description of each item: full title, every genre and up to
    ``k_tags`` user tags, as plain sentences (``text.item_texts`` without markers). This is
    the "long item title" that item-level compression shortens.

    Args:
        movies: the catalogue, as ``ml.movies``.
        tags: user tags (user_id, item_id, tag), or None for none.
        k_tags: the most tags per item.

    Returns:
        item_id -> text.
    """
    from llmrec_lib import text

    fields = ("title", "genres") + (("tags",) if tags is not None and len(tags) else ())
    top = text.top_tags(tags, k=k_tags) if "tags" in fields else None
    return text.item_texts(movies, fields=fields, tags=top, markers=False)


_ALT_TITLE = re.compile(r"\s*\([^)]*\)\s*$")


def short_item_texts(movies: pd.DataFrame, max_words: int = 8, max_genres: int = 2) -> pd.Series:
    """Item-level compression: a short canonical text per item, ``name 'yy (g1/g2)``.

    The name loses alternate titles in parentheses ("City of Lost Children, The (Cité des
    enfants perdus, La)" -> "The City of Lost Children") and is cut to ``max_words`` words;
    the year becomes two digits; only the ``max_genres`` most specific genres stay, as their
    core words. RecGPT shortens keyword-stuffed Taobao titles with an LLM; MovieLens titles
    are already short, so here the genre list is where the tokens are saved.

    Args:
        movies: item_id, name, year and genres, as ``ml.movies``.
        max_words: the most words of the name kept.
        max_genres: the most genres kept.

    Returns:
        item_id -> short text, in the order of ``movies``.
    """
    data.require_columns(movies, ("item_id", "name", "year", "genres"), "movies")
    out = []
    for name, year, genres in zip(movies["name"].astype(str), movies["year"], movies["genres"]):
        short = name
        while _ALT_TITLE.search(short) and _ALT_TITLE.sub("", short).strip():
            short = _ALT_TITLE.sub("", short)
        words = short.split()
        short = " ".join(words[:max_words]) + ("..." if len(words) > max_words else "")
        short = data.parse_title(short)[0]  # "City of Lost Children, The" -> "The City of..."
        if year is not None and not pd.isna(year):
            short += f" '{int(year) % 100:02d}"
        cats = item_categories(genres)[:max_genres]
        if cats:
            short += " (" + "/".join(GENRE_CORE[c] for c in cats) + ")"
        out.append(short)
    return pd.Series(out, index=pd.Index(movies["item_id"].to_numpy(), name="item_id"), name="short_text")


def _fmt_rating(r: float) -> str:
    return f"{float(r):g}"


def raw_history_texts(ratings: pd.DataFrame, item_text: pd.Series, users=None) -> pd.Series:
    """Each user's history uncompressed: one line per rating, oldest first,
    ``2016-05-01 14:03 rated 4.5: <item text>``. user_id -> text.

    Args:
        ratings: ratings with the columns of :data:`data.RATING_COLUMNS`.
        item_text: item_id -> the text shown for the item.
        users: the users to write (default: all in ``ratings``).

    Returns:
        user_id -> text, named "text".
    """
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    r = ratings if users is None else ratings[ratings["user_id"].isin(list(users))]
    r = r.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    when = pd.to_datetime(r["timestamp"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    lines = when + " rated " + r["rating"].map(_fmt_rating) + ": " + r["item_id"].map(item_text).astype(str)
    return lines.groupby(r["user_id"]).agg("\n".join).rename("text")


def time_buckets(timestamps, now: int, day_window: int = 30, month_window: int = 365) -> np.ndarray:
    """Sequence-level buckets, relative to ``now`` (the end of the visible history): a day
    ("2018-09-14") for the last ``day_window`` days, a month ("2018-07") for the last
    ``month_window`` days, a year ("2015") before that. Recent behaviour stays precise,
    old behaviour is summarised, as RecGPT does for lifelong histories.

    Args:
        timestamps: Unix seconds, one per rating.
        now: the end of the visible history, Unix seconds.
        day_window: ratings at most this many days old get a day.
        month_window: ratings at most this many days old get a month.

    Returns:
        One bucket label (str) per timestamp.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    age_days = (int(now) - ts) / 86400.0
    dt = pd.to_datetime(ts, unit="s")
    day, month, year = dt.strftime("%Y-%m-%d"), dt.strftime("%Y-%m"), dt.strftime("%Y")
    return np.where(age_days <= day_window, day, np.where(age_days <= month_window, month, year))


def compressed_history_lines(user_ratings: pd.DataFrame, item_text: pd.Series, *,
                             now: int | None = None, day_window: int = 30,
                             month_window: int = 365) -> list[str]:
    """Sequence-level compression of one user's (reliable) ratings, oldest bucket first.

    One line per time bucket (:func:`time_buckets`): ``2015 liked: A; B. disliked: C`` with
    items aggregated per bucket (an item rated several times in a bucket is listed once,
    ``x2``; each rating keeps its own line in the raw form). ``liked`` comes from
    :func:`reliable_behaviours`; a frame without it counts ratings >= :data:`LIKED_MIN` as liked.

    Args:
        user_ratings: one user's ratings (with ``liked`` from :func:`reliable_behaviours`, or
            without it).
        item_text: item_id -> the text shown for the item (e.g. :func:`short_item_texts`).
        now: the time the buckets are relative to (default: the newest rating).
        day_window: see :func:`time_buckets`.
        month_window: see :func:`time_buckets`.

    Returns:
        One line per bucket, oldest first (empty for no ratings).
    """
    if len(user_ratings) == 0:
        return []
    r = user_ratings.sort_values(["timestamp", "item_id"], kind="stable")
    liked = r["liked"].to_numpy() if "liked" in r.columns else (r["rating"] >= LIKED_MIN).to_numpy()
    ts = r["timestamp"].to_numpy()
    now = int(ts.max()) if now is None else int(now)
    return _bucket_lines(r["item_id"].to_numpy(), time_buckets(ts, now, day_window, month_window),
                         liked, item_text)


def _bucket_lines(items: np.ndarray, buckets: np.ndarray, liked: np.ndarray, item_text) -> list[str]:
    lines = []
    for b in dict.fromkeys(buckets.tolist()):  # buckets in time order
        sel = buckets == b
        parts = []
        for flag, word in ((True, "liked"), (False, "disliked")):
            ids = items[sel & (liked == flag)].tolist()
            if ids:
                counts: dict = {}
                for i in ids:  # first-seen order, counted
                    counts[i] = counts.get(i, 0) + 1
                parts.append(f"{word}: " + "; ".join(str(item_text[i]) + (f" x{c}" if c > 1 else "")
                                                      for i, c in counts.items()))
        lines.append(f"{b} " + ". ".join(parts))
    return lines


def compressed_history_texts(ratings: pd.DataFrame, item_text: pd.Series, users=None, **kw) -> pd.Series:
    """:func:`compressed_history_lines` for every user, joined by newlines. user_id -> text.

    Args:
        ratings: ratings with the columns of :data:`data.RATING_COLUMNS` (and ``liked``).
        item_text: item_id -> the text shown for the item.
        users: the users to write (default: all in ``ratings``).
        **kw: passed to :func:`compressed_history_lines` (now, day_window, month_window).

    Returns:
        user_id -> text, named "text".
    """
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    r = ratings if users is None else ratings[ratings["user_id"].isin(list(users))]
    out = {int(u): "\n".join(compressed_history_lines(g, item_text, **kw)) for u, g in r.groupby("user_id")}
    return pd.Series(out, name="text").rename_axis("user_id")


def history_prompt_text(user_ratings: pd.DataFrame, item_text: pd.Series, tokenizer, budget: int, *,
                        item_len: pd.Series | None = None, return_items: bool = False, **kw):
    """One user's compressed history (:func:`compressed_history_lines`) within ``budget``
    tokens: the newest ratings that fit, oldest dropped first, never half an item; buckets
    stay relative to the newest rating. Empty when not even one item fits.

    ``item_len`` (token count of each item text, e.g. ``text.count_tokens`` over
    ``item_text``) makes it fast: lengths are summed to find the cut, then the result is
    measured once and trimmed further if the estimate was short. ``return_items`` also
    returns the item ids shown (oldest first).

    Args:
        user_ratings: one user's ratings.
        item_text: item_id -> the text shown for the item.
        tokenizer: the model's tokenizer, which measures the budget.
        budget: the most tokens the history may take (>= 1).
        item_len: item_id -> tokens of its text, to find the cut fast (optional).
        return_items: also return the item ids shown.
        **kw: passed to :func:`compressed_history_lines`.

    Returns:
        The history text; with ``return_items``, (text, item ids shown, oldest first).
    """
    from llmrec_lib import text

    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    r = user_ratings.sort_values(["timestamp", "item_id"], kind="stable")
    if len(r) == 0:
        return ("", []) if return_items else ""
    items = r["item_id"].to_numpy()
    ts = r["timestamp"].to_numpy()
    liked = r["liked"].to_numpy() if "liked" in r.columns else (r["rating"] >= LIKED_MIN).to_numpy()
    buckets = time_buckets(ts, int(kw.pop("now", ts.max())), **kw)

    def render(k: int) -> str:
        s = slice(len(items) - k, len(items))
        return "\n".join(_bucket_lines(items[s], buckets[s], liked[s], item_text))

    def n_tokens(k: int) -> int:
        return int(text.count_tokens(tokenizer, [render(k)], add_special_tokens=False)[0])

    if item_len is not None:  # estimate: item + separator, plus a header per bucket
        per = item_len.reindex(items).fillna(8).to_numpy() + 2
        new_bucket = np.r_[True, buckets[1:] != buckets[:-1]][::-1]  # newest first
        est = np.cumsum(per[::-1] + np.where(new_bucket, 10, 0))
        k = int(np.searchsorted(est, budget, side="right"))
        while k > 0 and n_tokens(k) > budget:
            k -= 1
    elif n_tokens(len(items)) <= budget:
        k = len(items)
    else:
        lo, hi = 0, len(items)  # fits(lo) (or lo == 0), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if n_tokens(mid) <= budget else (lo, mid)
        k = lo
    out = render(k) if k else ""
    return (out, items[len(items) - k:].tolist()) if return_items else out


def compression_stats(ratings: pd.DataFrame, movies: pd.DataFrame, tokenizer, *,
                      tags: pd.DataFrame | None = None, users=None,
                      budgets: Sequence[int] = (2048, 4096, 8192)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Token counts of every user's whole history at each compression stage, measured with
    ``tokenizer``:

    ``raw`` (every rating, one line each, long item text), ``reliable`` (lukewarm ratings
    dropped), ``item-level`` (plus short item text), ``sequence-level`` (plus time buckets,
    items aggregated per bucket). Returns (per-user token table, fit table: share of users
    whose whole history fits each budget at each stage).

    Args:
        ratings: ratings with the columns of :data:`data.RATING_COLUMNS`.
        movies: the catalogue, as ``ml.movies``.
        tokenizer: the tokenizer that counts tokens.
        tags: user tags for the raw item text (optional).
        users: the users to measure (default: all).
        budgets: the context budgets, in tokens, of the fit table.

    Returns:
        (tokens, fits): tokens per user and stage; the share of users whose history fits each
        budget at each stage.
    """
    from llmrec_lib import text

    raw_text = raw_item_texts(movies, tags)
    short = short_item_texts(movies)
    rel = reliable_behaviours(ratings)
    if users is None:
        users = np.sort(ratings["user_id"].unique())
    users = np.asarray(list(users))
    stages = {
        "raw": raw_history_texts(ratings, raw_text, users),
        "reliable": raw_history_texts(rel, raw_text, users),
        "item-level": raw_history_texts(rel, short, users),
        "sequence-level": compressed_history_texts(rel, short, users),
    }
    table = pd.DataFrame(index=pd.Index(users, name="user_id"))
    for name, s in stages.items():
        s = s.reindex(users).fillna("")
        table[name] = text.count_tokens(tokenizer, s.tolist(), add_special_tokens=False)
    fit = pd.DataFrame({b: (table <= b).mean() for b in budgets}).T
    fit.index.name = "budget"
    return table, fit
