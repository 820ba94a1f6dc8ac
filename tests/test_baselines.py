"""Baselines on the synthetic world (planted interests) and on hand-made ratings with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import baselines as B
from llmrec_lib import config, data
from llmrec_lib import encoders as E
from llmrec_lib.evaluate import EvalData, evaluate

TINY_SASREC = dict(max_len=16, d_model=32, n_layers=1, n_heads=2, dropout=0.0, epochs=3,
                   batch_size=64, lr=3e-3, seed=0, num_threads=1)


def ratings(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).astype(
        {"user_id": "int64", "item_id": "int64", "rating": "float32", "timestamp": "int64"})


@pytest.fixture(scope="module")
def wsplit(world):
    return data.per_user_split(world.ml.ratings)


@pytest.fixture(scope="module")
def items(world):
    return world.ml.item_ids


@pytest.fixture(scope="module")
def sasrec(wsplit, items):
    return B.SASRec(items, **TINY_SASREC).fit(wsplit.train, progress=False)


def _all_systems(wsplit, items, sasrec):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    return [
        B.RandomScorer(items, seed=1).fit(),
        B.MostPopular(items).fit(wsplit),
        B.MostPopular(items, window_days=7, anchor="user").fit(wsplit.train),
        B.ItemKNN(items, n_neighbors=20).fit(wsplit.train),
        sasrec,
        E.ItemMeanRetrieval(items, vectors).fit(),
    ]


# ------------------------------------------------------------------------------------
# Shapes, columns, determinism
# ------------------------------------------------------------------------------------


def test_every_baseline_scores_the_whole_catalogue(wsplit, items, sasrec):
    users = wsplit.users("valid")[:17]
    for model in _all_systems(wsplit, items, sasrec):
        for stage in ("valid", "test"):
            s = model.for_stage(wsplit, stage).score(users)
            assert s.shape == (len(users), len(items)), model.name
            assert s.dtype == np.float32, model.name
            assert not np.isnan(s).any(), model.name
            assert model.can_score_items.shape == (len(items),)
            # -inf exactly where the model says it cannot score (nowhere in this world)
            np.testing.assert_array_equal(np.isfinite(s).all(axis=0), model.can_score_items)


def test_scores_exclude_nothing_seen(wsplit, items):
    """Exclusion is the protocol's job: a liked item keeps its (finite) score."""
    knn = B.ItemKNN(items, n_neighbors=None).fit(wsplit.train)
    system = knn.for_stage(wsplit, "valid")
    user = int(wsplit.users("valid")[0])
    seen = system.histories[user]
    assert len(seen) and np.isfinite(system.score([user])[0, seen]).all()


def test_random_is_seeded_and_batch_invariant(items, wsplit):
    users = wsplit.users("valid")
    a = B.RandomScorer(items, seed=3).fit().for_stage(wsplit, "valid")
    full = a.score(users)
    np.testing.assert_array_equal(full[5:9], a.score(users[5:9]))  # same user, same scores
    np.testing.assert_array_equal(full, B.RandomScorer(items, seed=3).fit().for_stage(wsplit, "valid").score(users))
    assert not np.array_equal(full, B.RandomScorer(items, seed=4).fit().for_stage(wsplit, "valid").score(users))


def test_sasrec_is_deterministic_under_a_seed(wsplit, items, sasrec):
    users = wsplit.users("valid")[:20]
    again = B.SASRec(items, **TINY_SASREC).fit(wsplit.train, progress=False)
    np.testing.assert_array_equal(sasrec.for_stage(wsplit, "valid").score(users),
                                  again.for_stage(wsplit, "valid").score(users))
    other = B.SASRec(items, **{**TINY_SASREC, "seed": 1}).fit(wsplit.train, progress=False)
    assert not np.allclose(sasrec.for_stage(wsplit, "valid").score(users),
                           other.for_stage(wsplit, "valid").score(users))


def test_sasrec_save_load_roundtrip(tmp_path, wsplit, items, sasrec):
    folder = sasrec.save(tmp_path / "sasrec")
    assert (folder / "model.safetensors").is_file()
    loaded = B.SASRec.load(folder, items)
    users = wsplit.users("test")[:10]
    np.testing.assert_allclose(loaded.for_stage(wsplit, "test").score(users),
                               sasrec.for_stage(wsplit, "test").score(users), rtol=1e-5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        B.SASRec.load(tmp_path / "nowhere", items)


# ------------------------------------------------------------------------------------
# Popularity
# ------------------------------------------------------------------------------------


def test_popularity_ranks_popular_items_first(world, wsplit, items):
    pop = B.MostPopular(items).fit(wsplit.train)
    s = pop.for_stage(wsplit, "valid").score(wsplit.users("valid")[:3])
    train = wsplit.train
    counts = train[train["rating"] >= data.POSITIVE_MIN]["item_id"].value_counts()
    counts = counts.reindex(items, fill_value=0).to_numpy()
    np.testing.assert_array_equal(s[0], counts.astype(np.float32))
    assert items[np.argmax(s[0])] == counts.argmax() + items[0]  # ids are 1..n here
    np.testing.assert_array_equal(s[0], s[2])  # the same list for everybody


def test_recent_popularity_uses_each_users_own_now():
    """Item 1 is popular in the early days, item 2 late; a user whose history ends early
    must get item 1 first (and nothing rated after their "now" may count)."""
    day = B.SECONDS_PER_DAY
    rows = [(10 + u, 1, 5.0, day * (1 + u % 3)) for u in range(5)]  # item 1: days 1-3
    rows += [(20 + u, 2, 5.0, day * (100 + u % 3)) for u in range(8)]  # item 2: days 100-102
    rows += [(30, 3, 5.0, day * 1), (31, 3, 5.0, day * 2)]  # item 3: early, less popular
    rows += [(1, 4, 4.0, day * 4), (2, 4, 4.0, day * 103)]  # the two users we score
    train = ratings(rows)
    items = np.array([1, 2, 3, 4])
    hist = ratings([(1, 4, 4.0, day * 4), (2, 4, 4.0, day * 103)])

    user_now = B.MostPopular(items, window_days=10, anchor="user").fit(train).bind(hist)
    s = user_now.score([1, 2])
    assert np.argmax(s[0]) == 0  # early user: item 1
    assert s[0, 1] == 0.0  # item 2's ratings are all in the early user's future
    assert np.argmax(s[1]) == 1  # late user: item 2
    # outside the window nothing counts, except as a tie-break below one rating
    assert s[1, 0] < 1.0 and s[1, 0] > s[1, 2] > 0.0

    np.testing.assert_array_equal(  # raw window counts at the late user's "now"
        B.MostPopular(items, window_days=10).fit(train).counts(day * 103), [0, 8, 0, 1])

    global_now = B.MostPopular(items, window_days=10, anchor="global").fit(train).bind(hist)
    g = global_now.score([1, 2])
    assert np.argmax(g[0]) == 1 and np.array_equal(g[0], g[1])  # 2018's hits for everybody

    with pytest.raises(ValueError, match="anchor"):
        B.MostPopular(items, anchor="yesterday")
    with pytest.raises(ValueError, match="window_days"):
        B.MostPopular(items, window_days=0)


# ------------------------------------------------------------------------------------
# Item-kNN
# ------------------------------------------------------------------------------------


def test_item_knn_equals_brute_force_cosine():
    train = ratings([
        (1, 10, 5.0, 1), (1, 20, 4.0, 2), (1, 30, 4.0, 3),
        (2, 10, 4.0, 1), (2, 20, 5.0, 2), (2, 40, 1.0, 3),  # 40 disliked: not a positive
        (3, 20, 4.0, 1), (3, 30, 4.5, 2), (3, 40, 4.0, 3),
        (4, 50, 2.0, 1),  # 50 never liked: no column
    ])
    items = np.array([10, 20, 30, 40, 50, 60])  # 60: never rated (cold)
    x = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=float)  # users x (10,20,30,40)
    sim = (x.T @ x) / np.sqrt(np.outer(x.sum(0), x.sum(0)))
    np.fill_diagonal(sim, 0.0)

    knn = B.ItemKNN(items, n_neighbors=None).fit(train)
    np.testing.assert_array_equal(knn.can_score_items, [True, True, True, True, False, False])
    assert knn.nnz == int((sim > 0).sum()) == knn._sim_t._nnz()  # the stored similarities
    hist = ratings([(7, 10, 5.0, 1), (7, 40, 4.0, 2)])  # a new user who liked 10 and 40
    s = knn.bind(hist).score([7])[0]
    np.testing.assert_allclose(s[:4], sim[0] + sim[3], rtol=1e-6)
    assert np.isneginf(s[4:]).all()

    top1 = B.ItemKNN(items, n_neighbors=1).fit(train).bind(hist).score([7])[0]
    expected = np.zeros(4)
    for i in (0, 3):  # each liked item passes on its single best neighbour
        j = int(np.argmax(sim[i]))
        expected[j] += sim[i, j]
    np.testing.assert_allclose(top1[:4], expected, rtol=1e-6)
    assert knn.similar_items(10, k=2).index[0] == 20
    shrunk = B.ItemKNN(items, n_neighbors=None, shrink=1.0).fit(train).bind(hist).score([7])[0]
    c = x.T @ x
    s_shrunk = c / (np.sqrt(np.outer(x.sum(0), x.sum(0))) + 1.0)
    np.fill_diagonal(s_shrunk, 0.0)
    np.testing.assert_allclose(shrunk[:4], s_shrunk[0] + s_shrunk[3], rtol=1e-6)


def test_item_knn_beats_random_on_the_synthetic_world(wsplit, items):
    ev = EvalData.from_split(wsplit, "valid", items)
    knn = evaluate(B.ItemKNN(items).fit(wsplit.train).for_stage(wsplit, "valid"), ev, ks=(10,))
    rnd = evaluate(B.RandomScorer(items).fit().for_stage(wsplit, "valid"), ev, ks=(10,))
    k_ci = knn.summary(metrics=["recall@10"]).loc["recall@10"]
    r_ci = rnd.summary(metrics=["recall@10"]).loc["recall@10"]
    assert k_ci["lo"] > r_ci["hi"], (k_ci, r_ci)  # non-overlapping 95% intervals
    assert k_ci["mean"] > 3 * r_ci["mean"]


# ------------------------------------------------------------------------------------
# Cold items
# ------------------------------------------------------------------------------------


def test_id_models_flag_cold_items_text_models_score_them(wsplit, items):
    cold_ids = items[:5]
    train = wsplit.train[~wsplit.train["item_id"].isin(cold_ids)]
    cold = np.isin(items, cold_ids)
    users = wsplit.users("valid")[:8]
    hist = wsplit.history("valid")
    knn = B.ItemKNN(items).fit(train)
    seq = B.SASRec(items, **{**TINY_SASREC, "epochs": 1}).fit(train, progress=False)
    liked = np.isin(items, train.loc[train["rating"] >= data.POSITIVE_MIN, "item_id"])
    assert not liked[cold].any() and liked.sum() > 0.9 * len(items)
    for model in (knn, seq):
        # an ID model can score exactly the items with a training positive
        np.testing.assert_array_equal(model.can_score_items, liked)
        s = model.bind(hist).score(users)  # the history still holds the cold items: skipped
        assert np.isneginf(s[:, ~liked]).all() and np.isfinite(s[:, liked]).all()
    text = E.ItemMeanRetrieval(items, np.random.default_rng(0).normal(size=(len(items), 4))).fit()
    assert text.can_score_items.all() and np.isfinite(text.bind(hist).score(users)).all()
    pop = B.MostPopular(items).fit(train)
    assert pop.can_score_items.all()  # a count of zero is still a score
    # the protocol records them: targets on cold items count as unscoreable misses
    ev = EvalData.from_frames(wsplit.targets("valid"), hist, train, items, stage="valid")
    res = evaluate(knn.bind(hist), ev, ks=(10,))
    assert res.counts["n_unscoreable_targets"] == int((~liked[ev.target_cols]).sum()) > 0


# ------------------------------------------------------------------------------------
# SASRec learns sequences
# ------------------------------------------------------------------------------------


def test_sasrec_learns_a_deterministic_sequence():
    """Every user walks the cycle 1 -> 2 -> ... -> 12 -> 1 from a different start: after
    training, the next item of any prefix must be predicted exactly."""
    n_items, rows = 12, []
    for u in range(48):
        for t in range(20):
            rows.append((u, (u + t) % n_items + 1, 5.0, t))
    train = ratings(rows)
    items = np.arange(1, n_items + 1)
    cfg = dict(max_len=8, d_model=32, n_layers=1, n_heads=2, dropout=0.0, epochs=60,
               batch_size=32, lr=1e-2, seed=0, num_threads=1)
    model = B.SASRec(items, **cfg).fit(train, progress=False)
    assert model.train_log[-1]["loss"] < 0.5 * model.train_log[0]["loss"]
    hist = ratings([(100 + s, (s + t) % n_items + 1, 5.0, t) for s in range(n_items) for t in range(5)])
    s = model.bind(hist).score(np.arange(100, 100 + n_items))
    predicted = items[np.argmax(s, axis=1)]
    expected = (np.arange(n_items) + 5) % n_items + 1
    assert (predicted == expected).mean() >= 0.9, (predicted, expected)


def test_sasrec_time_budget_stops_training(wsplit, items):
    model = B.SASRec(items, **{**TINY_SASREC, "epochs": 1000, "max_seconds": 0.5}).fit(wsplit.train, progress=False)
    assert model.stopped_early and model.fit_seconds < 10


def test_sasrec_windows_cover_every_transition(items):
    model = B.SASRec(items, max_len=4)
    seq = np.arange(1, 11)  # 10 items: 9 transitions
    x, y, src = model._windows([seq])
    pairs = {(int(a), int(b)) for xi, yi in zip(x, y) for a, b in zip(xi, yi) if b > 0}
    assert pairs == {(i, i + 1) for i in range(1, 10)}
    assert (x[y == 0] == 0).all()  # padding lines up in inputs and targets
    assert (src == np.arange(4)).all()  # no ties: each target is read at its own position


def test_sasrec_windows_read_twins_from_the_state_before_their_second(items):
    """Items 2 and 3 share a second, and so do 5, 6 and 7: each is predicted from the last
    item of an earlier second, never from its twin; item 1 has no earlier second at all."""
    model = B.SASRec(items, max_len=4)
    seq, times = np.arange(1, 9), np.array([10, 20, 20, 30, 40, 40, 40, 50])
    x, y, src = model._windows([seq], [times])
    read = {}
    for xi, yi, si in zip(x, y, src):
        for p in np.flatnonzero(yi):
            assert xi[si[p]] > 0 and times[xi[si[p]] - 1] < times[yi[p] - 1]
            read.setdefault(int(yi[p]), []).append(xi[: si[p] + 1][xi[: si[p] + 1] > 0].tolist())
    assert sorted(read) == [2, 3, 4, 5, 6, 7, 8]  # every target once, item 1 never
    assert all(len(v) == 1 for v in read.values())
    assert read[3][0][-1] == 1 and read[7][0][-1] == 4 and read[8][0][-1] == 7


def test_logq_correction_matches_its_formula():
    """With uninformative states every logit is equal, so the loss is log(#candidates); the
    correction then gives candidate j the logit -log q_j: a popular (often sampled) item
    is pushed down, exactly by its log sampling probability."""
    torch = pytest.importorskip("torch")
    emb = torch.nn.Embedding(4, 2)
    h = torch.zeros(3, 2)  # (N, D) states
    t = torch.tensor([1, 2, 3])  # (N,) targets = the three candidates
    emb.requires_grad_(False)
    assert abs(float(B.sampled_softmax_loss(h, t, emb, None)) - np.log(3)) < 1e-6
    q = np.array([1.0, 0.7, 0.2, 0.1])
    got = float(B.sampled_softmax_loss(h, t, emb, torch.log(torch.tensor(q, dtype=torch.float32))))
    w = 1.0 / q[1:]
    assert abs(got - float(np.mean(-np.log(w / w.sum())))) < 1e-5
    # duplicated targets are one candidate, never their own negative
    t2 = torch.tensor([1, 1, 2])
    assert abs(float(B.sampled_softmax_loss(torch.zeros(3, 2), t2, emb, None)) - np.log(2)) < 1e-6


# ------------------------------------------------------------------------------------
# Text retrieval
# ------------------------------------------------------------------------------------


def test_item_mean_retrieval_is_the_mean_of_liked_items():
    items = np.array([1, 2, 3])
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    model = E.ItemMeanRetrieval(items, vecs).fit()
    hist = ratings([(5, 1, 5.0, 1), (5, 2, 4.0, 2), (5, 3, 1.0, 3)])  # 3 disliked: ignored
    s = model.bind(hist).score([5])[0]
    u = np.array([0.5, 0.5]) / np.linalg.norm([0.5, 0.5])
    np.testing.assert_allclose(s, model.item_vectors @ u, rtol=1e-6)
    assert np.argmax(s) == 2  # the item halfway between the two liked ones
    last = E.ItemMeanRetrieval(items, vecs, max_history=1).fit().bind(hist).score([5])[0]
    assert np.argmax(last) == 1  # only the most recent like (item 2) counts


def test_prompt_retrieval_uses_the_encoder_once_per_stage(wsplit, items):
    calls = []

    def encode(history: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        calls.append(len(users))
        # a toy "prompt": the user's mean liked item id, so we know what comes back
        pos = history[history["rating"] >= data.POSITIVE_MIN]
        m = pos.groupby("user_id")["item_id"].mean().reindex(users).to_numpy()
        return np.stack([np.cos(m / 50), np.sin(m / 50)], axis=1)

    vecs = np.stack([np.cos(items / 50), np.sin(items / 50)], axis=1)
    model = E.PromptRetrieval(items, vecs, encode).fit()
    system = model.for_stage(wsplit, "valid")
    users = wsplit.users("valid")
    assert calls == [len(users)]
    s = system.score(users[:4])
    assert s.shape == (4, len(items)) and np.isfinite(s).all()
    with pytest.raises(KeyError, match="not encoded"):
        system.score(np.array([10_000]))


def test_embed_cached_reuses_vectors(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from llmrec_lib import backbones

    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path))
    bb = backbones.load_backbone("tiny-llama", device="cpu")
    texts = ["a space opera", "a quiet western", "a haunted house"]
    first = E.embed_cached(bb, texts, max_length=16, progress=False)
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1
    monkeypatch.setattr(E, "embed_texts", lambda *a, **k: pytest.fail("cache not used"))
    np.testing.assert_array_equal(E.embed_cached(bb, texts, max_length=16, progress=False), first)
    # another text, another entry (the cache never serves stale vectors)
    monkeypatch.undo()
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path))
    E.embed_cached(bb, texts[:2], max_length=16, progress=False)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 2


def test_embed_cached_reads_committed_vectors_and_checks_them(tmp_path, monkeypatch):
    """Quick mode serves artifacts/vectors/ copies, after re-encoding a sample live; a file
    that disagrees with the model is refused; full mode and LLMREC_COMMITTED_VECTORS=0 encode."""
    pytest.importorskip("transformers")
    from llmrec_lib import backbones

    committed = tmp_path / "committed"
    committed.mkdir()
    monkeypatch.setattr(E, "committed_vectors_dir", lambda: committed)
    monkeypatch.setenv("LLMREC_MODE", "quick")
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / "made"))
    bb = backbones.load_backbone("tiny-llama", device="cpu")
    texts = [f"a film about {w}" for w in ("trains", "ghosts", "chess", "bees", "rain")]
    made = E.embed_cached(bb, texts, max_length=16, progress=False)
    (entry,) = (tmp_path / "made" / "embeddings").glob("*-????????????????????????.npy")
    np.save(committed / entry.name, made.astype(np.float16))

    def fresh():  # a clean clone's empty cache
        monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path / f"clone{len(E._embedding_log)}"))
        return E.embed_cached(bb, texts, max_length=16, progress=False)

    got = fresh()
    row = E.embedding_log().iloc[-1]
    assert (row["source"], row["checked"]) == ("committed", len(texts))
    assert row["min cosine"] > 0.9999
    np.testing.assert_allclose(got, made, atol=2e-3)
    monkeypatch.setenv("LLMREC_MODE", "full")  # full mode encodes
    fresh()
    assert E.embedding_log().iloc[-1]["source"] == "encoded"
    monkeypatch.setenv("LLMREC_MODE", "quick")
    monkeypatch.setenv(E.COMMITTED_VECTORS_ENV, "0")
    fresh()
    assert E.embedding_log().iloc[-1]["source"] == "encoded"
    monkeypatch.setenv(E.COMMITTED_VECTORS_ENV, "maybe")
    with pytest.raises(ValueError, match="set it to 1"):
        fresh()
    monkeypatch.delenv(E.COMMITTED_VECTORS_ENV)
    np.save(committed / entry.name, made[::-1].astype(np.float16))  # rows out of order
    with pytest.raises(ValueError, match="disagrees with this model"):
        fresh()
    np.save(committed / entry.name, made[:3].astype(np.float16))
    with pytest.raises(ValueError, match="regenerate it"):
        fresh()


def test_embed_cached_encodes_only_the_texts_it_has_not_seen(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from llmrec_lib import backbones

    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path))
    bb = backbones.load_backbone("tiny-llama", device="cpu")
    old = ["a space opera", "a quiet western", "a haunted house", "a heist"]
    new = ["a heist", "a courtroom drama", "a space opera", "a courtroom drama"]
    E.embed_cached(bb, old, max_length=16, progress=False)
    seen = []
    real = E.embed_texts

    def counting(backbone, texts, **kw):
        seen.append(list(texts))
        return real(backbone, texts, **kw)

    monkeypatch.setattr(E, "embed_texts", counting)
    got = E.embed_cached(bb, new, max_length=16, progress=False)
    assert seen == [["a courtroom drama", "a courtroom drama"]]  # the two unseen rows only
    direct = real(bb, new, max_length=16, progress=False)
    # rows encoded in other batches: bf16 autocast (on CPUs with bf16 instructions) pads them
    # to other lengths and rounds to about 3 digits; float32 agrees to 1e-5
    tol = 3e-3 if config.bf16_is_fast("cpu") else 1e-5
    np.testing.assert_allclose(got, direct, atol=tol)
    # other arguments, another store: nothing is reused
    E.embed_cached(bb, new, max_length=8, progress=False)
    assert seen[-1] == new
    # a damaged store is rebuilt, not trusted
    for store in (tmp_path / "embeddings").glob("*-bytext-*.npz"):
        store.write_bytes(b"not a zip file")
    seen.clear()
    again = E.embed_cached(bb, ["a heist", "a road movie"], max_length=16, progress=False)
    assert seen == [["a heist", "a road movie"]]
    np.testing.assert_allclose(again[0], direct[0], atol=tol)


# ------------------------------------------------------------------------------------
# Errors that say what to do
# ------------------------------------------------------------------------------------


def test_clear_errors(wsplit, items):
    with pytest.raises(RuntimeError, match="fit"):
        B.ItemKNN(items).for_stage(wsplit, "valid")
    knn = B.ItemKNN(items).fit(wsplit.train)
    with pytest.raises(ValueError, match="no positive"):
        knn.for_stage(wsplit, "valid").score(np.array([123_456]))
    with pytest.raises(ValueError, match="catalogue"):
        B.ItemKNN(np.array([1, 2, 3])).fit(wsplit.train)
    with pytest.raises(TypeError, match="training ratings"):
        B.ItemKNN(items).fit([1, 2, 3])
    with pytest.raises(ValueError, match="sorted"):
        B.RandomScorer(items[::-1])
    with pytest.raises(ValueError, match="divisible"):
        B.SASRecConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match=r"item_vectors must be"):
        E.ItemMeanRetrieval(items, np.zeros((3, 2)))


# ------------------------------------------------------------------------------------
# Serving through an index, and result tables
# ------------------------------------------------------------------------------------


def test_vector_recommender_flat_index_matches_dense_scores(wsplit, items):
    pytest.importorskip("faiss")
    from llmrec_lib import index

    vecs = np.random.default_rng(1).normal(size=(len(items), 16)).astype(np.float32)
    model = E.ItemMeanRetrieval(items, vecs, max_history=5).fit()
    ev = EvalData.from_split(wsplit, "valid", items)
    results = B.evaluate_stages(model, wsplit, {"valid": ev}, ks=(10, 50))
    dense = results["valid"]
    assert "bind_seconds" in dense.timing
    bound = model.for_stage(wsplit, "valid")
    flat = index.build_index(model.item_vectors, "flat", "ip")
    served = evaluate(E.VectorRecommender(bound, flat), ev, ks=(10, 50))
    np.testing.assert_array_equal(served.topk, dense.topk)  # exact search = dense scoring
    # an index over a subset of the catalogue maps its rows back to catalogue columns
    cols = np.arange(0, len(items), 2)
    part = index.build_index(model.item_vectors[cols], "flat", "ip")
    recs = E.VectorRecommender(bound, part, columns=cols).recommend(ev.user_ids[:3], 5)
    assert recs.shape == (3, 5) and np.isin(recs, cols).all()
    with pytest.raises(ValueError, match="columns"):
        E.VectorRecommender(bound, part, columns=cols[:-1])
    with pytest.raises(TypeError, match="no user vectors"):
        B.MostPopular(items).fit(wsplit.train).for_stage(wsplit, "valid").user_vectors([1])


def test_tidy_and_wide_tables(wsplit, items):
    ev = EvalData.from_split(wsplit, "valid", items)
    rnd = evaluate(B.RandomScorer(items).fit().for_stage(wsplit, "valid"), ev, ks=(10,))
    pop = evaluate(B.MostPopular(items).fit(wsplit.train).for_stage(wsplit, "valid"), ev, ks=(10,))
    tidy = B.tidy_table([rnd, pop], ["recall@10", "coverage@10"], n_boot=200)
    assert list(tidy.columns) == ["system", "stage", "metric", "mean", "lo", "hi", "n_users"]
    assert len(tidy) == 4
    row = tidy[(tidy["system"] == "popular") & (tidy["metric"] == "recall@10")].iloc[0]
    assert row["lo"] <= row["mean"] <= row["hi"] and row["mean"] == pytest.approx(pop.mean("recall@10"))
    assert tidy.loc[tidy["metric"] == "coverage@10", "lo"].isna().all()  # one number, no interval
    grid = B.wide_table(tidy, "valid")
    assert list(grid.index) == ["random", "popular"] and "[" in grid.loc["popular", "recall@10"]
    with pytest.raises(ValueError, match="stage"):
        B.wide_table(tidy, "test")
    import matplotlib

    matplotlib.use("Agg")
    fig = B.bar_chart(tidy, ["recall@10"], stages=("valid",))
    assert len(fig.axes) == 1


def test_check_encoded_nothing_fails_when_a_list_was_encoded(monkeypatch):
    """The chapters' closing mechanic: full mode is not checked; quick mode fails on an encode."""
    from llmrec_lib import config

    monkeypatch.setattr(E, "_embedding_log", [])
    claims = config.Claims(reference=True)
    assert E.check_encoded_nothing(claims, "full") is None and not claims.items
    E._log("smollm2-135m-items-x.npy", 3, "committed")
    E._log("minilm-l6-items-y.npy", 3, "encoded")
    assert E.check_encoded_nothing(claims, "quick", "smollm2")
    with pytest.raises(AssertionError, match="encoded no list"):
        E.check_encoded_nothing(claims, "quick")
