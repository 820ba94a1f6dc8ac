"""faiss wrappers: exactness of Flat, cosine handling, persistence, ANN recall."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec_lib.index import KINDS, VectorIndex, ann_recall, build_index, load_index


def clustered(n=3000, d=32, n_clusters=30, seed=0):
    """Vectors around random centres: the structure IVF and HNSW exploit."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    q = centres[rng.integers(0, n_clusters, 200)] + 0.3 * rng.normal(size=(200, d)).astype(np.float32)
    return x, q


def brute_force(x, q, k, metric):
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        s = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    else:
        s = q @ x.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, axis=1), ids


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_flat_equals_brute_force(metric):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(20, 16)).astype(np.float32)
    idx = build_index(x, "flat", metric)
    scores, ids = idx.search(q, 10)
    ref_s, ref_ids = brute_force(x.astype(np.float64), q.astype(np.float64), 10, metric)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # higher is better, best first, for every metric
    assert idx.n == 500 and idx.dim == 16 and ids.dtype == np.int64


def test_cosine_normalises_vectors_and_queries():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    scale = rng.uniform(0.1, 50, size=(200, 1)).astype(np.float32)
    a = build_index(x, "flat", "cosine")
    b = build_index(x * scale, "flat", "cosine")  # lengths must not matter
    sa, ia = a.search(q, 10)
    sb, ib = b.search(q * 7.0, 10)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb, atol=1e-5)
    assert np.abs(sa).max() <= 1 + 1e-5  # cosine similarities
    # inner product, by contrast, favours long vectors
    _, ic = build_index(x * scale, "flat", "ip").search(q, 10)
    assert not np.array_equal(ia, ic)
    with pytest.raises(ValueError, match="zero vectors"):
        build_index(np.zeros((3, 4)), "flat", "cosine")


def test_save_load_roundtrip_and_mismatch(tmp_path):
    x, q = clustered(n=1000, d=16)
    idx = build_index(x, "ivf", "cosine", nprobe=4, seed=3)
    path = idx.save(tmp_path / "items.faiss")
    meta = json.loads((tmp_path / "items.faiss.json").read_text())
    assert meta["kind"] == "ivf" and meta["metric"] == "cosine" and meta["dim"] == 16 and meta["n"] == 1000
    back = load_index(path, dim=16, metric="cosine", kind="ivf")
    np.testing.assert_array_equal(back.search(q, 10)[1], idx.search(q, 10)[1])
    assert back.params["nprobe"] == 4 and back.memory_bytes() == idx.memory_bytes()
    with pytest.raises(ValueError, match="dim=16 but 576"):
        VectorIndex.load(path, dim=576)
    with pytest.raises(ValueError, match="metric='cosine' but 'l2'"):
        VectorIndex.load(path, metric="l2")
    with pytest.raises(FileNotFoundError, match="save"):
        VectorIndex.load(tmp_path / "missing.faiss")
    # metadata that does not describe the faiss file (e.g. copied from another build)
    meta["dim"] = 32
    (tmp_path / "items.faiss.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match its metadata"):
        VectorIndex.load(path)


def test_queries_must_match_dimension():
    idx = build_index(np.eye(4, dtype=np.float32), "flat", "ip")
    with pytest.raises(ValueError, match="dimension 3"):
        idx.search(np.ones((1, 3)), 1)
    s, i = idx.search(np.array([0, 0, 1.0, 0]), 6)  # 1-D query, k > n: padded with -1 / -inf
    assert i[0, 0] == 2 and (i[0, 4:] == -1).all() and np.isneginf(s[0, 4:]).all()
    with pytest.raises(ValueError, match="kind"):
        build_index(np.eye(4), "lsh")
    with pytest.raises(ValueError, match="NaN"):
        build_index(np.full((2, 2), np.nan))


def test_ann_recall():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert ann_recall(exact, exact) == 1.0
    approx = np.array([[4, 3, 9, -1], [0, 1, 2, 3]])
    assert ann_recall(approx, exact, per_query=True).tolist() == [0.5, 0.0]
    assert ann_recall(approx, exact) == 0.25
    # -1 in the exact list is not a neighbour to find
    assert ann_recall(np.array([[1, 7]]), np.array([[1, -1]])) == 1.0
    with pytest.raises(ValueError, match="same rows"):
        ann_recall(exact[:1], exact)


@pytest.mark.parametrize("kind,params,fetch,floor", [
    ("ivf", dict(nprobe=8), 10, 0.9),
    ("hnsw", dict(), 10, 0.95),
    # PQ's 4 one-byte codes per 32-d vector blur near neighbours: the usual recipe fetches
    # more candidates and re-ranks them exactly, so measure the exact top-10 within 50.
    ("pq", dict(), 50, 0.6),
    ("ivfpq", dict(nprobe=8), 50, 0.7),
])
def test_ann_recall_high_on_clustered_data(kind, params, fetch, floor):
    x, q = clustered()
    _, exact = build_index(x, "flat", "cosine").search(q, 10)
    idx = build_index(x, kind, "cosine", seed=0, **params)
    _, ids = idx.search(q, fetch)
    r = ann_recall(ids, exact)
    assert r >= floor, (kind, r)
    assert idx.memory_bytes() > 0
    if kind in ("pq", "ivfpq"):  # compressed: far smaller than float32 vectors
        assert idx.memory_bytes() < x.nbytes / 4


def test_more_pq_codes_more_recall():
    x, q = clustered(n=2000)
    _, exact = build_index(x, "flat", "l2").search(q, 10)
    coarse = build_index(x, "pq", "l2", pq_m=4)
    fine = build_index(x, "pq", "l2", pq_m=16)
    assert ann_recall(fine.search(q, 10)[1], exact) > ann_recall(coarse.search(q, 10)[1], exact) + 0.15
    assert fine.memory_bytes() > coarse.memory_bytes()


def test_knobs_trade_recall_for_speed():
    x, q = clustered(n=4000, d=32, n_clusters=60, seed=4)
    _, exact = build_index(x, "flat", "ip").search(q, 10)
    ivf = build_index(x, "ivf", "ip", seed=0)
    assert ivf.params["nlist"] == round(np.sqrt(4000)) and ivf.params["nprobe"] == 10
    ivf.set_search_params(nprobe=1)
    low = ann_recall(ivf.search(q, 10)[1], exact)
    ivf.set_search_params(nprobe=ivf.params["nlist"])  # every cell: exact
    assert ann_recall(ivf.search(q, 10)[1], exact) == 1.0 > low
    hnsw = build_index(x, "hnsw", "ip", M=8, ef_construction=40)
    hnsw.set_search_params(ef_search=400)
    assert hnsw.params["ef_search"] == 400
    with pytest.raises(ValueError, match="nprobe applies"):
        hnsw.set_search_params(nprobe=3)


def test_seeded_training_is_reproducible():
    x, q = clustered(n=2000, d=16)
    a = build_index(x, "ivfpq", "l2", seed=5).search(q, 5)[1]
    b = build_index(x, "ivfpq", "l2", seed=5).search(q, 5)[1]
    np.testing.assert_array_equal(a, b)


def test_defaults_for_every_kind():
    x, _ = clustered(n=600, d=24)
    for kind in KINDS:
        idx = build_index(x, kind, "cosine")
        assert idx.n == 600 and idx.kind == kind
    pq = build_index(x, "pq", "l2")
    assert pq.params["pq_m"] == 3 and pq.params["nbits"] == 8  # d / 8 sub-quantisers
    with pytest.raises(ValueError, match="divide"):
        build_index(x, "pq", pq_m=5)
    with pytest.raises(ValueError, match="training vectors"):
        build_index(x[:100], "pq", nbits=8)


def test_compare_indexes_table():
    from llmrec_lib.index import compare_indexes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    q = rng.normal(size=(40, 32)).astype(np.float32)
    t = compare_indexes(x, q, [("flat", {}), ("hnsw", {"ef_search": 64}), ("pq", {})], k=5, n_single=5)
    assert list(t["kind"]) == ["flat", "hnsw", "pq"]
    assert t.loc[0, "recall@5"] == 1.0  # flat is the exact reference
    assert t.loc[2, "memory_bytes"] < t.loc[0, "memory_bytes"]  # PQ codes are smaller than floats
    assert (t["recall@5 in 50"] >= t["recall@5"] - 1e-9).all()  # a wider list never finds fewer


def test_compare_indexes_keeps_its_indexes_for_reuse():
    from llmrec_lib.index import build_key, compare_indexes

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 32)).astype(np.float32)
    q = rng.normal(size=(40, 32)).astype(np.float32)
    configs = [("flat", {}), ("hnsw", {"M": 16, "ef_search": 64})]
    built = {}
    first = compare_indexes(x, q, configs, k=5, n_single=5, built=built)
    assert set(built) == {build_key("flat", {}), ("hnsw", (("M", 16),))}
    kept = dict(built)
    again = compare_indexes(x, q, configs, k=5, n_single=5, built=built)
    assert all(built[key] is kept[key] for key in kept)  # searched again, not rebuilt
    assert first["build_s"].notna().all() and again["build_s"].isna().all()
    assert (again["recall@5"] == first["recall@5"]).all()
