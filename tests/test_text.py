"""Item texts, popularity buckets and user prompts under a token budget."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrec_lib import backbones as B
from llmrec_lib import data
from llmrec_lib import text as T


@pytest.fixture(scope="module")
def tiny_tok():
    tok = B.build_byte_tokenizer()
    T.add_markers(tok)
    return tok


@pytest.fixture(scope="module")
def bundled_toks():
    """SmolLM2's BPE and MiniLM's WordPiece tokenizers with markers (skipped if absent)."""
    out = {}
    if importlib.util.find_spec(B.MINILM_PACKAGE) is not None:
        out["minilm"] = B.load_tokenizer("minilm-l6")
    if importlib.util.find_spec(B.SMOLLM2_PACKAGE) is not None:
        out["smollm2"] = B.load_tokenizer("smollm2-135m")
    if not out:
        pytest.skip("bundled model packages not installed (run `make setup`)")
    for tok in out.values():
        T.add_markers(tok)
    return out


MOVIES = pd.DataFrame({
    "item_id": [1, 2, 3, 4],
    "title": ["Toy Story (1995)", "Jumanji (1995)", "Matrix, The (1999)", "Untitled"],
    "name": ["Toy Story", "Jumanji", "The Matrix", "Untitled"],
    "year": pd.array([1995, 1995, 1999, None], dtype="Int64"),
    "genres": [["Adventure", "Animation"], ["Fantasy"], ["Action", "Sci-Fi"], []],
})


def _ratings(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).astype(
        {"user_id": "int64", "item_id": "int64", "rating": "float32", "timestamp": "int64"})


# --------------------------------------------------------------------------------------------
# Percentile buckets and popularity
# --------------------------------------------------------------------------------------------


def test_percentile_buckets_edges():
    v = np.arange(100)
    assert (T.percentile_buckets(v, 10) == v // 10).all()
    assert (T.percentile_buckets(v, 4) == v // 25).all()
    assert T.percentile_buckets([5.0], 10).tolist() == [4]  # one value: the middle bucket
    assert (T.percentile_buckets(np.full(50, 7), 10) == 4).all()  # all tied: one middle bucket
    # new values bucketed against training edges; out-of-range values clip to the ends
    edges = T.percentile_edges(v, 10)
    assert T.percentile_buckets([-5, 0, 55, 1000], 10, edges=edges).tolist() == [0, 0, 5, 9]


@given(st.lists(st.integers(0, 30), min_size=1, max_size=200), st.integers(2, 12))
@settings(max_examples=60, deadline=None)
def test_percentile_buckets_properties(values, n):
    b = T.percentile_buckets(values, n)
    v = np.asarray(values)
    assert b.min() >= 0 and b.max() <= n - 1
    order = np.argsort(v, kind="stable")
    assert (np.diff(b[order]) >= 0).all()  # monotone in the value
    for x in np.unique(v):
        assert len(np.unique(b[v == x])) == 1  # ties share a bucket


def test_percentile_buckets_reject_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        T.percentile_buckets([1.0, np.nan])
    with pytest.raises(ValueError, match="non-empty"):
        T.percentile_buckets([])
    with pytest.raises(ValueError, match="n must be"):
        T.percentile_buckets([1, 2], n=1)
    with pytest.raises(ValueError, match="edges"):
        T.percentile_buckets([1, 2], n=10, edges=np.array([1.0, 2.0]))


def test_popularity_counts_use_training_rows_only():
    train = _ratings([(1, 1, 5, 10), (2, 1, 3, 11), (1, 2, 4, 12)])
    later = _ratings([(3, 3, 5, 20), (4, 3, 5, 21), (5, 3, 4, 22), (3, 1, 2, 23)])
    counts = T.popularity_counts(train, [1, 2, 3, 4])
    assert counts.tolist() == [2, 1, 0, 0]
    assert counts.index.tolist() == [1, 2, 3, 4]
    # Item 3 is the most rated overall but has no training ratings: its text must not know.
    texts = T.item_texts(MOVIES, fields=("title", "pop"), popularity=counts)
    leaked = T.item_texts(MOVIES, fields=("title", "pop"),
                          popularity=T.popularity_counts(pd.concat([train, later]), [1, 2, 3, 4]))
    assert texts[3] != leaked[3]
    assert T.popularity_buckets(counts)[3] < T.popularity_buckets(counts)[1]
    with pytest.raises(ValueError, match="not in item_ids"):
        T.popularity_counts(train, [1])
    with pytest.raises(ValueError, match="item_id"):
        T.popularity_counts(pd.DataFrame({"x": [1]}), [1])


def test_popularity_from_the_real_split_has_no_leak(split, ml):
    counts = T.popularity_counts(split.train, ml.item_ids)
    assert int(counts.sum()) == len(split.train)
    targets = split.targets("test")
    only_in_test = set(targets.item_id) - set(split.train.item_id)
    assert all(counts[i] == 0 for i in only_in_test)


# --------------------------------------------------------------------------------------------
# Item text and markers
# --------------------------------------------------------------------------------------------


def test_top_tags_counts_users_lowercases_and_breaks_ties():
    tags = pd.DataFrame({
        "user_id": [1, 2, 3, 1, 1, 3, 4],
        "item_id": [7, 7, 7, 7, 7, 7, 8],
        "tag": ["Pixar", "pixar ", "funny", "PIXAR", "Animation", "FUNNY", "dark  comedy"],
        "timestamp": range(7),
    })
    top = T.top_tags(tags, k=2)
    assert top[7] == ["pixar", "animation"]  # pixar: users 1 and 2 (user 1 counted once)
    assert T.top_tags(tags, k=3)[7] == ["pixar", "animation", "funny"]  # 1 user each: a-z
    assert top[8] == ["dark comedy"]
    with pytest.raises(ValueError, match=r"tags lacks column\(s\) \[.tag.\]"):
        T.top_tags(tags.drop(columns="tag"))


def test_render_item_with_and_without_markers():
    s = T.render_item("Toy Story (1995)", ["Adventure", "Animation"], ["pixar"], pop_bucket=9)
    assert s == "[ITEM] Toy Story (1995) [GENRES] Adventure, Animation [TAGS] pixar [POP_9]"
    assert T.render_item("Heat (1995)", [], [], pop_count=123) == "[ITEM] Heat (1995) [POP] 123"
    plain = T.render_item("Toy Story (1995)", ["Adventure"], pop_bucket=9, markers=False)
    assert plain == "Movie: Toy Story (1995). Genres: Adventure. Popularity: 9 of 10."
    # a field cannot forge a marker: look-alikes are rewritten before rendering
    forged = T.render_item("Evil [POP_9] Movie", ["[GENRES]"], ["x [ITEM] y"], pop_bucket=0)
    assert forged == "[ITEM] Evil (POP_9) Movie [GENRES] (GENRES) [TAGS] x (ITEM) y [POP_0]"
    with pytest.raises(ValueError, match="not both"):
        T.render_item("x", pop_bucket=1, pop_count=2)
    with pytest.raises(ValueError, match="title"):
        T.render_item("  ")


def test_item_texts_fields_and_errors():
    texts = T.item_texts(MOVIES, fields=("title", "genres"))
    assert texts[3] == "[ITEM] The Matrix (1999) [GENRES] Action, Sci-Fi"
    assert texts[4] == "[ITEM] Untitled"  # no year, no genres: fields left out
    counts = pd.Series([10, 0, 3, 1], index=[1, 2, 3, 4])
    with_count = T.item_texts(MOVIES, fields=("title", "pop"), popularity=counts, pop_format="count")
    assert with_count[1] == "[ITEM] Toy Story (1995) [POP] 10"
    with pytest.raises(ValueError, match="tags"):
        T.item_texts(MOVIES, fields=("title", "tags"))
    with pytest.raises(ValueError, match="popularity"):
        T.item_texts(MOVIES, fields=("title", "pop"))
    with pytest.raises(ValueError, match="lacks"):
        T.item_texts(MOVIES, fields=("pop",), popularity=counts.iloc[:2])
    with pytest.raises(ValueError, match="unknown fields"):
        T.item_texts(MOVIES, fields=("title", "plot"))


def test_markers_are_single_tokens_and_save_tokens(tiny_tok):
    plain_tok = B.build_byte_tokenizer()  # same tokenizer, markers not registered
    assert T.add_markers(tiny_tok) == 0  # already added by the fixture: idempotent
    for m in T.marker_tokens():
        assert len(tiny_tok(m, add_special_tokens=False)["input_ids"]) == 1, m
        assert len(plain_tok(m, add_special_tokens=False)["input_ids"]) > 1
    texts = T.item_texts(MOVIES, fields=("title", "genres", "pop"), popularity=pd.Series([1, 2, 3, 4], index=[1, 2, 3, 4]))
    with_markers = T.count_tokens(tiny_tok, texts.tolist())
    unregistered = T.count_tokens(plain_tok, texts.tolist())
    assert (with_markers < unregistered).all()


@pytest.mark.bundled
def test_markers_single_tokens_in_bundled_tokenizers(bundled_toks):
    for name, tok in bundled_toks.items():
        for m in T.marker_tokens():
            assert len(tok(m, add_special_tokens=False)["input_ids"]) == 1, (name, m)
        ids = tok("[ITEM] Toy Story [POP_9]", add_special_tokens=False)["input_ids"]
        assert tok.convert_tokens_to_ids("[POP_9]") in ids  # not lower-cased or split by WordPiece


# --------------------------------------------------------------------------------------------
# User prompts
# --------------------------------------------------------------------------------------------

HISTORY = _ratings([
    (1, 1, 5.0, 100), (1, 2, 4.0, 101), (1, 3, 2.0, 102), (1, 4, 4.5, 103),
    (2, 3, 3.0, 50),  # user 2 has no positives
    (3, 4, 4.0, 7), (3, 1, 4.0, 7),  # same timestamp: item id breaks the tie
])


def test_user_prompts_positive_only_chronological(tiny_tok):
    texts = T.item_texts(MOVIES, fields=("title", "genres"))
    df = T.user_prompts(HISTORY, texts, tiny_tok, budget=None)
    assert df.user_id.tolist() == [1, 2, 3]
    u1 = df.iloc[0]
    assert u1.item_ids.tolist() == [1, 2, 4] and u1.n_history == 3  # item 3 rated 2.0 dropped
    assert u1.prompt == "[HISTORY]" + texts[1] + texts[2] + texts[4]
    assert df.iloc[1].prompt == "[HISTORY]" and df.iloc[1].n_items == 0
    assert df.iloc[2].item_ids.tolist() == [1, 4]
    all_r = T.user_prompts(HISTORY, texts, tiny_tok, budget=None, positive_only=False, show_rating=True)
    assert all_r.iloc[0].n_history == 4
    assert "[RATED] 2" in all_r.iloc[0].prompt and "[RATED] 4.5" in all_r.iloc[0].prompt
    plain = T.user_prompts(HISTORY, T.item_texts(MOVIES, fields=("title",), markers=False), tiny_tok,
                           budget=None, markers=False)
    assert plain.iloc[0].prompt.startswith("Movies this user liked, oldest first:\nMovie: Toy Story")


def test_user_prompts_keep_most_recent_whole_items(tiny_tok):
    texts = T.item_texts(MOVIES, fields=("title", "genres"))
    full = T.user_prompts(HISTORY, texts, tiny_tok, budget=None).iloc[0]
    seg = T.count_tokens(tiny_tok, [texts[i] for i in (1, 2, 4)], add_special_tokens=False)
    prefix = T.count_tokens(tiny_tok, ["[HISTORY]"])[0]
    assert full.n_tokens == prefix + seg.sum()  # lengths add up exactly with markers
    budget = int(prefix + seg[1] + seg[2])  # room for the two newest items exactly
    df = T.user_prompts(HISTORY, texts, tiny_tok, budget=budget)
    u1 = df.iloc[0]
    assert u1.item_ids.tolist() == [2, 4] and u1.n_tokens == budget
    u1 = T.user_prompts(HISTORY, texts, tiny_tok, budget=budget - 1).iloc[0]
    assert u1.item_ids.tolist() == [4]  # one token short: the older item goes, whole
    assert texts[4] in u1.prompt and texts[2] not in u1.prompt
    tiny_budget = T.user_prompts(HISTORY, texts, tiny_tok, budget=int(prefix)).iloc[0]
    assert tiny_budget.n_items == 0 and tiny_budget.prompt == "[HISTORY]"


def test_user_prompts_errors(tiny_tok):
    texts = T.item_texts(MOVIES, fields=("title",))
    with pytest.raises(ValueError, match="smaller than the prompt's fixed part"):
        T.user_prompts(HISTORY, texts, tiny_tok, budget=5, markers=False)  # the plain prefix is 37 bytes
    with pytest.raises(KeyError, match="no text"):
        T.user_prompts(HISTORY, texts.drop(4), tiny_tok)
    with pytest.raises(ValueError, match=r"ratings lacks column\(s\) \[.timestamp.\]"):
        T.user_prompts(HISTORY.drop(columns="timestamp"), texts, tiny_tok)
    with pytest.raises(ValueError, match="budget"):
        T.user_prompts(HISTORY, texts, tiny_tok, budget=-3)


class PairTokenizer:
    """A fake tokenizer whose lengths are NOT additive (one token per two characters, rounded
    down), so summed item lengths underestimate prompts and the trimming loop must work."""

    def __call__(self, texts, add_special_tokens=True, verbose=False):
        return {"input_ids": [[0] * (len(t) // 2) for t in texts]}


@given(
    hist=st.lists(st.tuples(st.integers(1, 4), st.integers(1, 6), st.sampled_from([1.0, 3.5, 4.0, 5.0]),
                            st.integers(0, 50)), min_size=0, max_size=60),
    words=st.lists(st.text(min_size=1, max_size=30), min_size=6, max_size=6),
    budget=st.integers(1, 120),
    markers=st.booleans(),
    show_rating=st.booleans(),
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_budget_is_never_exceeded(tiny_tok, hist, words, budget, markers, show_rating):
    hist = _ratings(list({(u, i): (u, i, r, ts) for u, i, r, ts in hist}.values()))
    texts = pd.Series([(("[ITEM] " if markers else "") + w) for w in words], index=range(1, 7))
    for tok in (tiny_tok, PairTokenizer()):
        prefix = T.count_tokens(tok, ["[HISTORY]" if markers else "Movies this user liked, oldest first:"])[0]
        if budget < prefix:
            continue
        df = T.user_prompts(hist, texts, tok, budget=budget, markers=markers, show_rating=show_rating)
        assert (df.n_tokens <= budget).all()
        assert (df.n_tokens == T.count_tokens(tok, df.prompt.tolist())).all()
        for row in df.itertuples():
            chrono = hist[(hist.user_id == row.user_id) & (hist.rating >= data.POSITIVE_MIN)]
            chrono = chrono.sort_values(["timestamp", "item_id"]).item_id.tolist()
            kept = row.item_ids.tolist()
            assert kept == (chrono[len(chrono) - len(kept):] if kept else [])  # a suffix: newest kept
            assert row.n_history == len(chrono)


@pytest.mark.bundled
@given(
    hist=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5), st.just(5.0), st.integers(0, 20)),
                  min_size=1, max_size=40),
    words=st.lists(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=25), min_size=5, max_size=5),
    budget=st.integers(8, 80),
    markers=st.booleans(),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_budget_is_never_exceeded_with_real_tokenizers(bundled_toks, hist, words, budget, markers):
    hist = _ratings(list({(u, i): (u, i, r, ts) for u, i, r, ts in hist}.values()))
    texts = pd.Series([(("[ITEM] " if markers else "") + w) for w in words], index=range(1, 6))
    for tok in bundled_toks.values():
        prefix = T.count_tokens(tok, ["[HISTORY]" if markers else "Movies this user liked, oldest first:"])[0]
        if budget < prefix:
            continue
        df = T.user_prompts(hist, texts, tok, budget=budget, markers=markers)
        assert (df.n_tokens <= budget).all()
        assert (df.n_tokens == T.count_tokens(tok, df.prompt.tolist())).all()


@pytest.mark.bundled
def test_all_real_users_render_fast_and_fit(split, ml, bundled_toks):
    import time

    texts = T.item_texts(ml.movies, fields=("title", "genres"))
    for tok in bundled_toks.values():
        t0 = time.perf_counter()
        df = T.user_prompts(split.train, texts, tok, budget=256)
        assert time.perf_counter() - t0 < 10
        assert len(df) == split.train.user_id.nunique() and (df.n_tokens <= 256).all()
        assert (df.n_items[df.n_history > 0] >= 1).all()  # one title always fits 256 tokens


def test_fit_shares():
    assert T.fit_shares([100, 200, 300, 2000], (128, 256, 1024)) == {128: 0.25, 256: 0.5, 1024: 0.75}
    with pytest.raises(ValueError):
        T.fit_shares([])


def test_training_tags_drop_the_future():
    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [4.0, 3.0, 5.0],
                          "timestamp": [10, 20, 5]})
    t = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [1, 1, 1, 1],
                      "tag": ["a", "b", "c", "d"], "timestamp": [20, 21, 5, 1]})
    kept = T.training_tags(t, train)
    assert kept["tag"].tolist() == ["a", "c"]  # b: after user 1's last rating; d: unknown user


