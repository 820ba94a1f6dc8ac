"""Interactions: what a positive is, what a user's history is, and what "before t" means.

Every model in the book reads the same thing from the ratings: a user's positives in time
order, and, for a training target at time ``t``, the part of that history the model may use.
This module says it once, and the baselines (``baselines.Histories``), the dual encoder's
trainer (``train.training_pairs``, ``train.SequenceTrainer``), the prompts (``text``) and the
three towers (``recgpt``) all build on it:

* :data:`POSITIVE_MIN` and :data:`NEGATIVE_MAX`: a rating >= 4.0 is a positive (the user liked
  it), a rating <= 2.0 is "seen but disliked", the book's stand-in for impressions without
  engagement. :func:`positives` keeps the former, in time order.
* :data:`ORDER`: the one order of interactions, (user, timestamp, item id); :func:`in_time_order`.
* :class:`Sequences`: each user's positives as flat arrays with one block per user.
* :func:`history_end`: the one tie rule (below); :func:`history_before` is its plain-words
  reference, used by the test that every model sees the same history.
* :func:`require_columns`: the one column check (``data`` re-exports it, with
  :class:`SchemaError`, for its many callers).
* :func:`newest_that_fit`: the newest whole items that fit a token budget.

**The tie rule: a same-second positive is never history.** MovieLens stores seconds, and a
user often rates a page of movies within one second: on the reference split 15% of
consecutive training positives share their timestamp. Inside such a batch the order is not an
order of consumption; the item id that breaks the tie in :data:`ORDER` is arbitrary. So the
history of an interaction at time ``t`` is the user's rows with timestamp *strictly* less than
``t``, by the clock, not by position: counting positions would let the smaller-id twin of a
batch "predict" the other, a label learnt from the database's sort order that no deployed
model could see. The splits follow the same rule (``data.per_user_split`` never lets a
same-second batch straddle history and target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

POSITIVE_MIN = 4.0
NEGATIVE_MAX = 2.0
RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
ORDER = ("user_id", "timestamp", "item_id")  # time order; ties in time by item id


class DataError(Exception):
    """A problem with the data files or tables; the message says what to do about it."""


class SchemaError(DataError, ValueError):
    """A table or file without the columns, values or ids the book needs (also a ValueError,
    so callers that catch wrong arguments catch it too)."""


def require_columns(df, columns, what: str, hint: str = "") -> None:
    """The library's one column check: raise :class:`SchemaError` naming the table, the
    columns it lacks, the columns it has and where the right table comes from.

    Args:
        df: the table (anything with ``columns``).
        columns: the column names it must have.
        what: the table's name in the message ("ratings", "training ratings").
        hint: what to pass instead ("Pass split.train.").
    """
    have = list(getattr(df, "columns", ()))
    missing = [c for c in columns if c not in have]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; it has {have}" + (
            f". {hint}" if hint else ""))


def in_time_order(ratings: pd.DataFrame) -> pd.DataFrame:
    """The one order of interactions.

    Args:
        ratings: rows with user_id, timestamp and item_id.

    Returns:
        ``ratings`` sorted by :data:`ORDER` (user, then time, ties by item id), index reset.
    """
    return ratings.sort_values(list(ORDER), kind="stable", ignore_index=True)


def positives(ratings: pd.DataFrame, threshold: float = POSITIVE_MIN) -> pd.DataFrame:
    """What a user liked.

    Args:
        ratings: rows with user_id, item_id, rating and timestamp.
        threshold: the lowest rating that counts as a like (:data:`POSITIVE_MIN`).

    Returns:
        The rows with ``rating >= threshold`` in :func:`in_time_order`.
    """
    return in_time_order(ratings[ratings["rating"] >= threshold])


def history_end(times: np.ndarray, t) -> np.ndarray | int:
    """The tie rule of the module docstring: a row in the same second as ``t`` is never history.

    Args:
        times: one user's timestamps, ascending (a block of :class:`Sequences` or of the
            user's rows in :func:`in_time_order`).
        t: the time of the interaction (or an array of times).

    Returns:
        How many leading entries of ``times`` are history for ``t``: those strictly earlier.
    """
    return np.searchsorted(times, t, side="left")


def history_before(ratings: pd.DataFrame, user: int, t: int) -> np.ndarray:
    """The definition every model's history must agree with, written as plainly as possible.

    Args:
        ratings: rows with user_id, item_id, rating and timestamp.
        user: the user.
        t: the time of the interaction.

    Returns:
        Item ids of ``user``'s positives rated strictly before ``t``, oldest first.
    """
    pos = positives(ratings)
    return pos.loc[(pos["user_id"] == user) & (pos["timestamp"] < t), "item_id"].to_numpy()


@dataclass(frozen=True)
class Sequences:
    """Each user's positives (or every rating), oldest first: flat arrays (``item_id``,
    ``timestamp``, in :data:`ORDER`) and one block per user, ``start[i]:start[i] + count[i]``
    for ``users[i]``."""

    users: np.ndarray  # (U,) ascending user ids
    start: np.ndarray  # (U,) first row of each user's block
    count: np.ndarray  # (U,) rows in each block
    item_id: np.ndarray  # (N,)
    timestamp: np.ndarray  # (N,)
    rating: np.ndarray | None = None  # (N,) only when built with every_rating=True

    @classmethod
    def from_ratings(cls, ratings: pd.DataFrame, what: str = "ratings",
                     hint: str = "", every_rating: bool = False) -> "Sequences":
        """The positives of ``ratings`` (checked for :data:`RATING_COLUMNS`) as sequences;
        with ``every_rating``, every rating, its score kept in ``rating``."""
        require_columns(ratings, RATING_COLUMNS, what, hint)
        rows = in_time_order(ratings) if every_rating else positives(ratings)
        users, start, count = np.unique(rows["user_id"].to_numpy(np.int64), return_index=True,
                                        return_counts=True)
        return cls(users, start, count, rows["item_id"].to_numpy(np.int64),
                   rows["timestamp"].to_numpy(np.int64),
                   rows["rating"].to_numpy(np.float64) if every_rating else None)

    def __len__(self) -> int:
        return len(self.item_id)

    def per_user(self, values: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """``{user: that user's block of values}`` (default: the item ids); ``values`` is any
        array aligned with the flat rows, e.g. the items' catalogue columns."""
        values = self.item_id if values is None else np.asarray(values)
        if len(values) != len(self):
            raise ValueError(f"values has {len(values)} rows for {len(self)} positives")
        return {int(u): values[s : s + c] for u, s, c in zip(self.users, self.start, self.count)}

    def history_ends(self) -> np.ndarray:
        """(N,) for each row, how many rows of its user's block are its history: the block's
        rows strictly earlier in time (:func:`history_end` for every row at once)."""
        out = np.empty(len(self), dtype=np.int64)
        for s, c in zip(self.start, self.count):
            times = self.timestamp[s : s + c]
            out[s : s + c] = history_end(times, times)
        return out


def newest_that_fit(lengths: Sequence[int], room: int) -> int:
    """The newest whole items that fit a token budget (items are kept or dropped whole).

    Args:
        lengths: each item's length in tokens, oldest first.
        room: the tokens available.

    Returns:
        The largest k whose last k lengths sum to at most ``room``.
    """
    newest_first = np.cumsum(np.asarray(lengths)[::-1])
    return int(np.searchsorted(newest_first, room, side="right"))
