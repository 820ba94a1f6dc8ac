"""The interactions core: one order, one tie rule, and every model seeing the same history.

The property test draws small ratings frames full of same-second ties and checks, for every
positive (user, t), that each model's history constructor returns exactly the user's
positives strictly before t (``interactions.history_before``), oldest first: the dual
encoder's training pairs, its every-position trainer's prefixes, the baselines' histories at
"now", SASRec's training windows and the three towers' training pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrec_lib import baselines, data, interactions, text, train

# --------------------------------------------------------------------------------------
# A small world with same-second ties
# --------------------------------------------------------------------------------------


def tied_ratings(seed: int, n_users: int = 5, n_items: int = 25, n_seconds: int = 6) -> pd.DataFrame:
    """Ratings on a handful of distinct seconds, so most users rate several items in one
    second; each (user, item) at most once, rows shuffled (no model may rely on input order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(2, 12)), replace=False)
        for i in items:
            rows.append((u, int(i), float(rng.choice([1.0, 2.0, 3.0, 4.0, 4.5, 5.0])),
                         1_000 + 60 * int(rng.integers(0, n_seconds))))
    frame = pd.DataFrame(rows, columns=list(interactions.RATING_COLUMNS))
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def events(frame: pd.DataFrame) -> list[tuple[int, int, int]]:
    """(user, timestamp, item) of every positive, in the one time order."""
    pos = interactions.positives(frame)
    return list(zip(pos["user_id"].tolist(), pos["timestamp"].tolist(), pos["item_id"].tolist()))


def reference(frame: pd.DataFrame, user: int, t: int) -> list[int]:
    return interactions.history_before(frame, user, t).tolist()


# --------------------------------------------------------------------------------------
# Each model's history for a positive (user, t)
# --------------------------------------------------------------------------------------


def from_train_pairs(frame: pd.DataFrame) -> dict[tuple[int, int, int], list[int]]:
    pairs = train.training_pairs(frame, min_history=0)
    items = pairs.history["item_id"].to_numpy()
    return {(int(u), int(t), int(i)): items[s:e].tolist() for u, t, i, s, e in zip(
        pairs.user_id, pairs.timestamp, pairs.item_id, pairs.hist_start, pairs.hist_end)}


def from_sequences(frame: pd.DataFrame) -> dict[tuple[int, int, int], list[int]]:
    """``Sequences.history_ends`` and the every-position trainer's ``prefix_boundaries``."""
    seqs = interactions.Sequences.from_ratings(frame)
    ends = seqs.history_ends()
    out = {}
    for s, c in zip(seqs.start, seqs.count):
        rows = np.arange(s, s + c)
        np.testing.assert_array_equal(train.prefix_boundaries(seqs.timestamp, s, s + c, rows),
                                      ends[s : s + c])
    for row, user in enumerate(np.repeat(seqs.users, seqs.count)):
        s = int(seqs.start[np.searchsorted(seqs.users, user)])
        key = (int(user), int(seqs.timestamp[row]), int(seqs.item_id[row]))
        out[key] = seqs.item_id[s : s + ends[row]].tolist()
    return out


def from_histories_at(frame: pd.DataFrame, user: int, t: int) -> list[int]:
    """The baselines' input when a recommendation is asked for at t: everything before t."""
    item_ids = np.arange(1, frame["item_id"].max() + 1)
    hist = baselines.Histories(frame[frame["timestamp"] < t], item_ids)
    return item_ids[hist[user]].tolist()


def from_sasrec(frame: pd.DataFrame) -> dict[tuple[int, int, int], list[int]]:
    """What SASRec's state reads for each training target (``max_len`` above any user's
    count, so each user is one window and the whole history fits)."""
    item_ids = np.arange(1, frame["item_id"].max() + 1)
    model = baselines.SASRec(item_ids, max_len=16)
    L = model.cfg.max_len
    seqs, times = model._training_sequences(frame)
    x, y, src = model._windows(seqs, times)
    users = interactions.Sequences.from_ratings(frame).users
    by_index = np.concatenate([[0], item_ids[model.vocab_cols]])  # model index -> item id
    out, row = {}, 0
    for user, t in zip(users, times):
        if len(t) < 2 or t[-1] == t[0]:
            continue  # a user with no target in a later second has no window
        for p in np.flatnonzero(y[row]):
            seen = x[row, : src[row, p] + 1]
            target_t = int(t[p - L + len(t)])  # the target at p is seq[p - L + len]
            out[(int(user), target_t, int(by_index[y[row, p]]))] = by_index[seen[seen > 0]].tolist()
        row += 1
    assert row == len(x)
    return out


def from_towers(frame: pd.DataFrame) -> dict[tuple[int, int, int], list[int]]:
    towers = pytest.importorskip("llmrec_lib.recgpt.towers")
    item_ids = np.arange(1, frame["item_id"].max() + 1)
    movies = pd.DataFrame({"item_id": item_ids, "genres": [("Drama",)] * len(item_ids),
                           "year": 1990})
    feats = towers.ItemFeatures.build(movies, frame, item_ids)
    pairs = towers.training_pairs(frame, feats, max_history=64)
    by_index = np.zeros(feats.id_index.max() + 1, dtype=np.int64)
    by_index[feats.id_index] = item_ids  # id index -> item id (0 stays padding)
    seqs = interactions.Sequences.from_ratings(frame)
    rows = np.flatnonzero(seqs.history_ends() > 0)  # towers pair only targets with a history
    assert len(pairs) == len(rows)
    out = {}
    for k, row in enumerate(rows):
        user, target = int(pairs.user_ids[pairs.user[k]]), int(item_ids[pairs.target[k]])
        assert target == seqs.item_id[row]
        hist = pairs.hist[k]
        out[(user, int(seqs.timestamp[row]), target)] = by_index[hist[hist > 0]].tolist()
    return out


# --------------------------------------------------------------------------------------
# The property
# --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_every_model_sees_the_same_history(seed):
    frame = tied_ratings(seed)
    evs = events(frame)
    expected = {e: reference(frame, e[0], e[1]) for e in evs}
    assert from_train_pairs(frame) == expected
    assert from_sequences(frame) == expected
    for user, t, item in evs[:: max(1, len(evs) // 6)]:
        assert from_histories_at(frame, user, t) == expected[(user, t, item)]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_three_towers_see_the_same_history(seed):
    frame = tied_ratings(seed)
    expected = {e: reference(frame, e[0], e[1]) for e in events(frame)}
    assert from_towers(frame) == {e: h for e, h in expected.items() if h}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_sasrec_trains_on_the_same_history(seed):
    frame = tied_ratings(seed)
    expected = {e: reference(frame, e[0], e[1]) for e in events(frame)}
    assert from_sasrec(frame) == {e: h for e, h in expected.items() if h}


def test_a_same_second_positive_is_never_history():
    frame = pd.DataFrame({"user_id": [1, 1, 1, 1], "item_id": [30, 10, 20, 40],
                          "rating": [5.0, 5.0, 4.0, 1.0], "timestamp": [100, 200, 200, 200]})
    assert reference(frame, 1, 200) == [30]  # not 10, although 10 sorts before 20
    assert from_train_pairs(frame)[(1, 200, 20)] == [30]
    assert from_sequences(frame)[(1, 200, 20)] == [30]
    assert interactions.history_end(np.array([100, 200, 200]), 200) == 1


# --------------------------------------------------------------------------------------
# The other pieces of the core
# --------------------------------------------------------------------------------------


def test_positives_are_in_the_one_order_with_one_pair_of_thresholds():
    frame = tied_ratings(3)
    pos = interactions.positives(frame)
    assert (pos["rating"] >= 4.0).all() and len(pos) == int((frame["rating"] >= 4.0).sum())
    keys = list(zip(pos["user_id"], pos["timestamp"], pos["item_id"]))
    assert keys == sorted(keys)
    assert (data.POSITIVE_MIN, data.NEGATIVE_MAX) == (interactions.POSITIVE_MIN,
                                                      interactions.NEGATIVE_MAX) == (4.0, 2.0)


def test_one_column_check_and_one_error_class():
    assert data.require_columns is interactions.require_columns
    assert data.SchemaError is interactions.SchemaError
    with pytest.raises(data.SchemaError, match=r"lacks column\(s\) \['timestamp'\]"):
        interactions.Sequences.from_ratings(pd.DataFrame(columns=["user_id", "item_id", "rating"]))


def test_sequences_split_per_user():
    frame = tied_ratings(5)
    seqs = interactions.Sequences.from_ratings(frame)
    per_user = seqs.per_user()
    for user, items in per_user.items():
        assert items.tolist() == reference(frame, user, 10**9)
    with pytest.raises(ValueError, match="rows"):
        seqs.per_user(np.zeros(len(seqs) + 1))


def test_newest_that_fit_keeps_whole_items_from_the_newest():
    assert text.newest_that_fit is interactions.newest_that_fit  # one helper, used by prompts
    assert interactions.newest_that_fit([5, 3, 4], 7) == 2  # 4 + 3 fit, 4 + 3 + 5 do not
    assert interactions.newest_that_fit([5, 3, 4], 12) == 3
    assert interactions.newest_that_fit([5, 3, 4], 3) == 0  # the newest alone is too long
    assert interactions.newest_that_fit([], 10) == 0
