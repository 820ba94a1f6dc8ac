"""Scaling out: data-parallel runs through torchrun, the index at scale, FLOPs and the projection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from llmrec_lib import scaling, train


def test_ddp_configs_keep_the_global_batch():
    enc1, tr1 = scaling.ddp_configs(1, global_batch=16, steps=5, n_layers=2)
    enc2, tr2 = scaling.ddp_configs(2, global_batch=16, steps=5, n_layers=2)
    assert tr1.batch_size == 16 and tr2.batch_size == 8 and tr1.steps == tr2.steps == 5
    assert enc1 == enc2 and enc1.n_layers == 2 and tr1.checkpoint_every == 0
    # the same pairs in every global step, whatever the number of processes
    n = 1000
    one = train.batch_indices(n, 16, 3, tr1.seed)
    two = np.concatenate([train.batch_indices(n, 8, 3, tr2.seed, rank=r, world=2) for r in range(2)])
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="split evenly"):
        scaling.ddp_configs(3, global_batch=16)


def test_two_torchrun_processes_train_the_same_model_as_one(data_dir, tmp_path):
    """The module entry point under torchrun (gloo): same global losses, same adapter."""
    kw = dict(global_batch=8, steps=4, n_layers=None, backbone="tiny-llama", comm_repeats=3)
    one = scaling.launch_ddp(1, tmp_path / "one", threads_per_process=1, **kw)
    two = scaling.launch_ddp(2, tmp_path / "two", threads_per_process=1, **kw)
    s1, s2 = scaling.ddp_summary(one, skip=1), scaling.ddp_summary(two, skip=1)
    assert s1["processes"] == 1 and s2["processes"] == 2 and s2["backend"] == "gloo"
    assert [r["per_process_batch"] for r in two["ranks"]] == [4, 4]
    np.testing.assert_allclose(s2["loss"], s1["loss"], rtol=2e-2)
    assert np.linalg.norm(two["adapter"] - one["adapter"]) < 0.05 * np.linalg.norm(one["adapter"])
    assert s2["allreduce_ms"] > 0 and s1["allreduce_ms"] == 0
    assert "--nproc_per_node 2" in two["command"]


def test_ddp_summary_takes_the_slowest_rank():
    ranks = [{"world": 2, "global_batch": 8, "threads": 1, "backend": "gloo", "grad_values": 10,
              "step_seconds": [9, 1, 2, 1], "tokens": [10, 10, 10, 10], "loss": [2, 2, 2, 2],
              "allreduce_seconds": [0.001]},
             {"world": 2, "global_batch": 8, "threads": 1, "backend": "gloo", "grad_values": 10,
              "step_seconds": [9, 2, 1, 2], "tokens": [20, 20, 20, 20], "loss": [4, 4, 4, 4],
              "allreduce_seconds": [0.003]}]
    s = scaling.ddp_summary({"ranks": ranks}, skip=1)
    assert s["seconds_per_step"] == 2 and s["examples_per_second"] == 4 and s["tokens_per_second"] == 15
    assert s["loss"] == [3, 3, 3, 3] and s["allreduce_ms"] == pytest.approx(2.0)
    assert s["allreduce_best_ms"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="more than skip"):
        scaling.ddp_summary({"ranks": ranks}, skip=4)


def test_clustered_vectors_are_unit_seeded_and_chunk_free():
    a = scaling.clustered_vectors(1000, 16, n_clusters=10, rank=None, seed=1, chunk=300)
    b = scaling.clustered_vectors(1000, 16, n_clusters=10, rank=None, seed=1, chunk=300)
    q = scaling.clustered_vectors(50, 16, n_clusters=10, rank=None, seed=1, sample=1)
    assert a.dtype == np.float32 and a.shape == (1000, 16)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    assert not np.isin(q[:, 0], a[:, 0]).any()  # queries are new draws, not copies of items
    # clustered: a query's best item is far closer than a typical one
    sims = q @ a.T
    assert np.median(sims.max(axis=1)) > np.median(sims) + 0.3
    # low rank: almost all the variance lies in `rank` directions
    lo = scaling.clustered_vectors(2000, 64, n_clusters=10, rank=8, seed=2)
    var = np.linalg.svd(lo - lo.mean(0), compute_uv=False) ** 2
    assert var[:8].sum() > 0.95 * var.sum()
    with pytest.raises(ValueError):
        scaling.clustered_vectors(0, 16)
    with pytest.raises(ValueError):
        scaling.clustered_vectors(10, 16, rank=32)


def test_exact_topk_matches_a_full_sort():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((1037, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    ids, secs = scaling.exact_topk(items, queries, 5, chunk=100)
    np.testing.assert_array_equal(ids, np.argsort(-(queries @ items.T), axis=1)[:, :5])
    assert secs >= 0
    with pytest.raises(ValueError):
        scaling.exact_topk(items, queries, 0)


def test_index_at_scale_trades_recall_for_memory():
    table, facts = scaling.index_at_scale(20_000, 64, n_queries=200, nprobes=(1, 16), n_clusters=50, rank=16, pq_m=8)
    assert list(table["nprobe"]) == [1, 16] and (table["kind"] == "ivfpq").all()
    assert facts["vectors_bytes"] == 20_000 * 64 * 4
    assert (table["memory_bytes"] < facts["vectors_bytes"] / 8).all()  # 8 bytes of code vs 256 of floats
    lo, hi = table["recall@10"].to_numpy()
    assert 0 <= lo < hi <= 1  # more cells searched, more neighbours found
    assert (table["recall@10 in 100"] >= table["recall@10"]).all()


def test_forward_flops_are_half_of_training_with_frozen_weights():
    f = scaling.forward_flops(1_000_000, 100, n_layers=2, hidden=64, seq_len=100)
    assert f == pytest.approx(2 * 1_000_000 * 100 + 4 * 2 * 100 * 64 * 100)
    assert 2 * f == pytest.approx(train.transformer_flops(1_000_000, 100, 2, 64, 100))


def test_encoding_throughput_counts_real_tokens(tiny):
    texts = ["a short one", "a somewhat longer text about films", "x" * 40] * 4
    out = scaling.encoding_throughput(tiny, texts, max_length=32, batch_size=4, peak_gflops=1e6)
    lengths = [len(x) for x in tiny.tokenizer(texts, truncation=True, max_length=32)["input_ids"]]
    assert out["texts"] == 12 and out["tokens_per_text"] == pytest.approx(np.mean(lengths))
    n = scaling.matmul_params(tiny)
    assert 0 < n < sum(p.numel() for p in tiny.model.parameters())  # embeddings are not matmuls
    want = np.mean([scaling.forward_flops(n, t, tiny.n_layers, tiny.hidden_size, t) for t in lengths])
    assert out["flops_per_text"] == pytest.approx(want)
    assert out["texts_per_second"] > 0 and 0 < out["mfu"] < 1
    with pytest.raises(ValueError, match="empty"):
        scaling.encoding_throughput(tiny, [], max_length=8)


def test_project_is_plain_arithmetic():
    p = scaling.project(1e9, 4e9, items_per_day=1e6, users_per_day=1e6, gpu_peak_flops=1e12, mfu=0.5)
    assert p["item_flops_per_day"] == 1e15 and p["user_flops_per_day"] == 4e15
    assert p["gpu_hours_per_day"] == pytest.approx(5e15 / 5e11 / 3600)
    assert p["gpus_all_day"] == pytest.approx(p["gpu_hours_per_day"] / 24)
    assert p["items_per_gpu_second"] == pytest.approx(500)
    with pytest.raises(ValueError, match="share of the peak"):
        scaling.project(1, 1, items_per_day=1, users_per_day=1, gpu_peak_flops=1, mfu=1.5)
    assert scaling.index_bytes(1e6, 512, 2) == 1.024e9
    assert math.isclose(1 - scaling.index_bytes(1, 512, 4) / scaling.index_bytes(1, 3072, 4), 5 / 6)


def test_recgpt_bill_is_arithmetic_known_by_hand():
    bill = scaling.recgpt_bill({
        # 1,000 users every 14 days; 500 prompt tokens at 1,000/s (0.5 s) + 100 new at 10/s (10 s)
        "rates": {"users": 1000, "refresh_days": 14, "prompt_tokens": 500, "new_tokens": 100,
                  "prompt_tokens_per_s": 1000, "new_tokens_per_s": 10},
        # measured end to end: 2 s a user, 3,600 users a day -> 2 device-hours a day
        "measured": {"users": 3600, "refresh_days": 1, "prompt_tokens": 10, "new_tokens": 1, "seconds_per_user": 2},
    })
    r = bill.loc["rates"]
    assert r["device_seconds_per_user"] == pytest.approx(10.5)
    assert r["tokens_per_refresh"] == pytest.approx(600_000)
    assert r["device_hours_per_refresh"] == pytest.approx(10_500 / 3600)
    assert r["devices_all_day"] == pytest.approx(10_500 / (14 * 86400))
    m = bill.loc["measured"]
    assert m["device_hours_per_refresh"] == pytest.approx(2.0) and m["devices_all_day"] == pytest.approx(2 / 24)
    with pytest.raises(ValueError, match="refresh_days"):
        scaling.recgpt_bill({"x": {"users": 1, "refresh_days": 0, "prompt_tokens": 1, "new_tokens": 1,
                                   "seconds_per_user": 1}})
    with pytest.raises(ValueError, match="positive"):
        scaling.recgpt_bill({"x": {"users": 1, "refresh_days": 1, "prompt_tokens": 1, "new_tokens": 1,
                                   "prompt_tokens_per_s": 0, "new_tokens_per_s": 1}})


def test_generation_flops_split_prefill_and_decode():
    pre, dec = scaling.generation_flops(1e6, 100, 10, n_layers=2, hidden=8)
    assert pre == pytest.approx(scaling.forward_flops(1e6, 100, 2, 8, 100))
    assert dec == pytest.approx(2 * 1e6 * 10 + 4 * 2 * 105 * 8 * 10)  # context: prompt + half the answer


def test_recgpt_run_tokens_rebuild_the_committed_prompts(setting):
    from llmrec_lib import recgpt

    if not (recgpt.artifacts_dir() / recgpt.META).is_file():
        pytest.skip("no committed RecGPT artifacts")
    a = scaling.recgpt_run_tokens(setting, "ch06", source="fine-tuned")
    assert len(a) == a["user_id"].nunique() > 0
    assert a["interest_sha_ok"].all() and a["tag_sha_ok"].all()  # the prompts the run answered
    # the tag prompt holds the interest prompt's history plus the interests
    assert (a["tag_prompt_tokens"] > a["history_tokens"]).all()
    assert (a["interest_prompt_tokens"] > a["history_tokens"]).all()
    assert (a["history_tokens"] <= recgpt.HISTORY_BUDGET).all()
    if (recgpt.artifacts_dir() / "tagger" / "tags.jsonl").is_file():
        b = scaling.recgpt_run_tokens(setting, "ch07", stage="valid")
        assert b["tag_sha_ok"].all() and b["interest_new_tokens"].isna().all()
    with pytest.raises(ValueError, match="run must be"):
        scaling.recgpt_run_tokens(setting, "ch99")


def test_checkpoint_curve_reads_logged_evaluations(tmp_path):
    meta = {"pairs_seen": 400, "steps_done": 40,
            "evals": [{"step": 10, "eval_recall@50": 0.1}, {"step": 20, "loss": 1.0}, {"step": 40, "eval_recall@50": 0.2}]}
    (tmp_path / "encoder.json").write_text(json.dumps({"meta": meta}))
    c = scaling.checkpoint_curve(tmp_path)
    assert list(c["step"]) == [10, 40] and list(c["pairs"]) == [100, 400]
    assert list(c["eval_recall@50"]) == [0.1, 0.2]


def test_log_trend_recovers_a_planted_slope():
    x = np.array([100, 200, 400, 800, 1600])
    y = 0.05 + 0.01 * np.log2(x)
    t = scaling.log_trend(x, y)
    assert t["b"] == pytest.approx(0.01) and t["a"] == pytest.approx(0.05) and t["r2"] == pytest.approx(1.0)
    assert t["predict"](3200) == pytest.approx(0.05 + 0.01 * np.log2(3200))
    noisy = y + np.array([0.004, -0.004, 0.003, -0.003, 0.0])
    tn = scaling.log_trend(x, noisy)
    assert tn["b_lo"] < 0.01 < tn["b_hi"] and tn["r2"] < 1
    with pytest.raises(ValueError):
        scaling.log_trend([1, 2], [0.1, 0.2])


def test_arm_costs_are_the_chapter_09_arithmetic():
    from types import SimpleNamespace

    towers = SimpleNamespace(dim=64, hidden=128, max_history=50)
    sasrec = {"d_model": 64, "n_layers": 2, "max_len": 50}
    user, long_user, item = scaling.forward_flops(1e6, 100, 8, 576, 100), 3e9, 2e9
    costs = scaling.arm_costs(1000, llm_user_flops=user, llm_long_user_flops=long_user,
                              llm_item_flops=item, llm_dim=576, median_history=40, knn_nnz=5000,
                              sasrec=sasrec, towers=towers)
    assert costs["popularity"].mflop_per_user == 1000 / 1e6
    assert costs["item-kNN"].user_flops == 2 * 40 * 5000 / 1000 and costs["item-kNN"].index_bytes == 20 * 5000
    assert costs["SASRec"].mflop_per_user == (2 * 12 * 64**2 * 2 * 50 + 2 * 64 * 1000) / 1e6
    assert costs["LLM dual encoder"].mflop_per_user == (user + 2 * 576 * 1000) / 1e6
    assert costs["LLM dual encoder"].new_item_needs == "one forward of its text (2.00 GFLOP)"
    assert costs["LLM, mixed negatives + log-Q"].user_flops == long_user
    best = costs["LLM, whole history + prior"]  # the short prompt, plus the mean of 40 vectors
    assert best.user_flops == user + 40 * 576
    multi = costs["item-kNN + LLM multi-source"]
    assert multi.user_flops == best.user_flops + costs["item-kNN"].user_flops
    assert multi.index_bytes == 4 * 576 * 1000 + 20 * 5000
    assert costs["item-kNN + LLM rank fusion"] == multi  # the same two sources, merged otherwise
    assert costs["item-kNN + LLM rank fusion + cold slots"] == multi  # cold slots: the LLM's scores
    long_best = scaling.arm_costs(1000, llm_user_flops=user, llm_long_user_flops=long_user,
                                  llm_item_flops=item, llm_dim=576, median_history=40, knn_nnz=5000,
                                  sasrec=sasrec, towers=towers, llm_best_long=True)
    assert long_best["LLM, whole history + prior"].user_flops == long_user + 40 * 576
    tower = costs["three towers, no user ID, rule tags"]
    assert tower.user_flops == 50 * 64 + 2 * (384 * 128 + 128 * 64) and tower.index_bytes == 4 * 64 * 1000
    assert len(costs) == 15
