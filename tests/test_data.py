"""The loader, its errors on bad input, and the splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import data
from tests.conftest import append_text as _append


@pytest.fixture(autouse=True)
def _checksums_on_by_default(monkeypatch):
    """These tests mean the default (checksums on) unless they pass verify=False: a reader's
    LLMREC_DATA_VERIFY=0 must not change them."""
    monkeypatch.delenv("LLMREC_DATA_VERIFY", raising=False)


# ---- loading the real files ---------------------------------------------------------------

def test_real_data_loads_typed(ml):
    s = ml.summary()
    assert (s["users"], s["movies"], s["ratings"], s["tags"]) == (610, 9742, 100836, 3683)
    assert ml.ratings.dtypes.to_dict() == {
        "user_id": np.dtype("int64"), "item_id": np.dtype("int64"),
        "rating": np.dtype("float32"), "timestamp": np.dtype("int64"),
    }
    toy = ml.movies.set_index("item_id").loc[1]
    assert toy["name"] == "Toy Story" and toy["year"] == 1995 and "Animation" in toy["genres"]
    assert len(ml.item_ids) == 9742 and np.all(np.diff(ml.item_ids) > 0)


def test_titles_are_parsed():
    assert data.parse_title("Matrix, The (1999)") == ("The Matrix", 1999)
    assert data.parse_title("Haunted World of El Superbeasto, The (2009)")[0].startswith("The Haunted")
    assert data.parse_title("Babylon 5") == ("Babylon 5", None)
    assert data.parse_title("Misérables, Les (1995)") == ("Les Misérables", 1995)
    assert data.parse_title("Homme, L' (2001)")[0] == "L'Homme"


def test_crlf_and_lf_copies_hash_the_same(tmp_path, data_dir):
    lf = tmp_path / "movies.csv"
    lf.write_bytes((data_dir / "movies.csv").read_bytes().replace(b"\r\n", b"\n"))
    assert data.file_sha256(lf) == data.file_sha256(data_dir / "movies.csv")


# ---- bad input: each gives an error that says what to do ----------------------------------

def test_missing_folder_says_make_data(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="make data"):
        data.load_movielens(tmp_path / "nowhere")


def test_checksum_mismatch_says_how_to_skip(copy):
    _append(copy / "ratings.csv", "1,1,4.0,964982703\r\n")
    with pytest.raises(data.ChecksumError, match="verify=False"):
        data.load_movielens(copy)


def test_own_data_loads_with_check_skipped(copy):
    _append(copy / "ratings.csv", "1,2,5.0,964982704\r\n")
    ml = data.load_movielens(copy, verify=False)
    assert len(ml.ratings) == 100837


def test_missing_column(copy):
    df = pd.read_csv(copy / "ratings.csv").drop(columns=["timestamp"])
    df.to_csv(copy / "ratings.csv", index=False)
    with pytest.raises(data.SchemaError, match="timestamp"):
        data.load_movielens(copy, verify=False)


def test_malformed_row_names_its_line(copy):
    _append(copy / "ratings.csv", "1,2,five,964982704\r\n")
    with pytest.raises(data.SchemaError, match=r"line\(s\) \[100838\]"):
        data.load_movielens(copy, verify=False)


def test_rating_out_of_range(copy):
    _append(copy / "ratings.csv", "1,2,7.0,964982704\r\n")
    with pytest.raises(data.SchemaError, match="outside 0.5-5.0"):
        data.load_movielens(copy, verify=False)


def test_unknown_item_id(copy):
    _append(copy / "ratings.csv", "1,99999999,4.0,964982704\r\n")
    with pytest.raises(data.SchemaError, match="99999999"):
        data.load_movielens(copy, verify=False)


def test_truncated_file_names_it_and_says_restore(copy):
    # cut movies.csv in the middle of a quoted title: pandas alone says "EOF inside string"
    raw = (copy / "movies.csv").read_bytes()
    cut = raw.index(b'"American President')
    (copy / "movies.csv").write_bytes(raw[: cut + 10])
    with pytest.raises(data.SchemaError, match="movies.csv") as err:
        data.load_movielens(copy, verify=False)
    assert str(copy / "movies.csv") in str(err.value) and "make data" in str(err.value)
    with pytest.raises(data.ChecksumError, match="movies.csv"):
        data.load_movielens(copy)


def test_empty_file_names_it_and_says_restore(copy):
    (copy / "tags.csv").write_bytes(b"")
    with pytest.raises(data.ChecksumError, match=r"tags.csv: empty \(0 bytes\)"):
        data.load_movielens(copy)  # the reference layout, checksums on
    # unverified, tags.csv is optional: empty or missing, the rest still loads
    assert len(data.load_movielens(copy, verify=False).tags) == 0
    (copy / "tags.csv").unlink()
    assert len(data.load_movielens(copy, verify=False).tags) == 0
    with pytest.raises(data.ChecksumError, match="tags.csv: missing"):
        data.load_movielens(copy)
    # a required file that is empty gets the clear error: which file, and what to do
    (copy / "movies.csv").write_bytes(b"")
    with pytest.raises(data.SchemaError, match="empty") as err:
        data.load_movielens(copy, verify=False)
    assert str(copy / "movies.csv") in str(err.value) and "make data" in str(err.value)


# ---- splits ---------------------------------------------------------------------------------

def test_per_user_split_is_chronological_and_disjoint(ml, split):
    hist = split.train.groupby("user_id")["timestamp"].max()
    for stage in ("valid", "test"):
        t = split.targets(stage)
        assert (t["rating"] >= data.POSITIVE_MIN).all()
        first = t.groupby("user_id")["timestamp"].min()
        common = first.index.intersection(hist.index)
        # a same-timestamp batch never straddles history and target
        assert (hist[common] < first[common]).all()
    v_last = split.targets("valid").groupby("user_id")["timestamp"].max()
    t_first = split.targets("test").groupby("user_id")["timestamp"].min()
    common = v_last.index.intersection(t_first.index)
    assert (v_last[common] < t_first[common]).all()
    # every rating lands in exactly one place
    assert len(split.train) + len(split.valid_window) + len(split.test_window) == len(ml.ratings)


def test_per_user_split_sizes(split):
    s = split.summary()
    assert 590 <= s["test_users"] <= 610 and 550 <= s["valid_users"] <= 610
    t = split.targets("test")
    # test targets are about 20% of each eligible user's positives (more when a batch ties)
    pos_all = pd.concat([split.train, split.valid_window, split.test_window])
    pos_all = pos_all[pos_all["rating"] >= data.POSITIVE_MIN].groupby("user_id").size()
    share = t.groupby("user_id").size() / pos_all[t["user_id"].unique()]
    assert 0.18 <= share.median() <= 0.3


def test_history_for_test_includes_validation_window(split):
    h = split.history("test")
    assert len(h) == len(split.train) + len(split.valid_window)
    assert split.history("valid") is split.train


def test_cold_flags_mean_never_in_train(split):
    warm = set(split.train["item_id"])
    t = split.targets("test")
    assert t["is_cold"].equals(~t["item_id"].isin(warm))
    assert 0 < t["is_cold"].mean() < 0.2


def test_split_is_deterministic(ml, split):
    again = data.per_user_split(ml.ratings.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(again.targets("test"), split.targets("test"))


def test_same_timestamp_batch_goes_to_target():
    # user 1: positives at t=1..6, and two positives share t=6; 20% of 7 -> 1 target, but the
    # tied rating joins it instead of staying in history
    rows = [(1, i, 5.0, i) for i in range(1, 7)] + [(1, 7, 5.0, 6)]
    r = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    s = data.per_user_split(r, min_positives=5)
    assert sorted(s.targets("test")["item_id"]) == [6, 7]
    assert 6 not in set(s.train["item_id"]) and 7 not in set(s.train["item_id"])


def test_global_split_counts(ml):
    g = data.global_split(ml.ratings, quantile=0.9)
    counts = data.window_users_without_history(g, "test")
    assert counts == {"window_users": 72, "without_history": 47, "evaluable_users": 25}
    assert data.future_share(g).max() == 0.0


def test_future_share_of_per_user_split(split):
    share = data.future_share(split)
    assert 0.4 < share.median() < 0.65  # about half of the training ratings come later


def test_bad_split_arguments(ml):
    with pytest.raises(ValueError):
        data.per_user_split(ml.ratings, test_frac=0.6, valid_frac=0.5)
    with pytest.raises(data.SchemaError):
        data.per_user_split(ml.ratings.drop(columns=["rating"]))


def test_require_columns_is_the_one_column_check():
    frame = pd.DataFrame({"user_id": [1], "item_id": [2]})
    data.require_columns(frame, ("user_id", "item_id"), "targets")  # complete: no error
    with pytest.raises(data.SchemaError, match=r"ratings lacks column\(s\) \['rating', "
                       r"'timestamp'\]; it has \['user_id', 'item_id'\]\. Pass split\.train\."):
        data.require_columns(frame, data.RATING_COLUMNS, "ratings", "Pass split.train.")
    assert issubclass(data.SchemaError, ValueError)  # callers catching bad arguments catch it
