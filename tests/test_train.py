"""Training pairs never leak the future; the trainer resumes exactly; 2 processes = 1 process."""

from __future__ import annotations

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec_lib import data, synthetic, text, train
from llmrec_lib.encoders import DualEncoder, EncoderConfig


@pytest.fixture(scope="module")
def world_split():
    w = synthetic.make_world(n_users=60, n_items=120, seed=3)
    return w, data.per_user_split(w.ml.ratings)


def test_pairs_use_only_strictly_earlier_positives(world_split):
    _, split = world_split
    pairs = train.training_pairs(split.train)
    assert len(pairs) > 100
    h = pairs.history
    for i in np.random.default_rng(0).choice(len(pairs), 200, replace=False):
        rows = h.iloc[pairs.hist_start[i] : pairs.hist_end[i]]
        assert (rows["user_id"] == pairs.user_id[i]).all()
        assert (rows["timestamp"] < pairs.timestamp[i]).all()
        assert (rows["rating"] >= data.POSITIVE_MIN).all()
        # and nothing earlier was left out
        before = h[(h["user_id"] == pairs.user_id[i]) & (h["timestamp"] < pairs.timestamp[i])]
        assert len(before) == len(rows)
    # only training rows: no validation or test target is ever a training target
    held = set(zip(split.valid_window["user_id"], split.valid_window["item_id"])) | set(
        zip(split.test_window["user_id"], split.test_window["item_id"]))
    assert not held & set(zip(pairs.user_id, pairs.item_id))


def test_full_history_pairs_include_disliked(world_split):
    _, split = world_split
    full = train.training_pairs(split.train, positive_only=False)
    assert (full.history["rating"] <= data.NEGATIVE_MAX).any()


def test_batches_are_a_pure_function_of_the_step():
    a = [train.batch_indices(100, 8, s, seed=1) for s in range(30)]
    b = [train.batch_indices(100, 8, s, seed=1) for s in range(30)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # one epoch (12 steps of 8 out of 100) never repeats a pair
    assert len(set(np.concatenate(a[:12]).tolist())) == 96
    # two ranks split the global batch without overlap
    r0, r1 = train.batch_indices(100, 4, 5, 1, 0, 2), train.batch_indices(100, 4, 5, 1, 1, 2)
    assert not set(r0) & set(r1) and np.array_equal(np.concatenate([r0, r1]), train.batch_indices(100, 8, 5, 1))


def _trainer(world_split, tmp_path, steps, **kw):
    w, split = world_split
    torch.manual_seed(0)
    model = DualEncoder(EncoderConfig(backbone="tiny-llama", n_layers=None, user_max_tokens=96,
                                      item_max_tokens=32))
    items = text.item_texts(w.ml.movies, fields=("title", "genres"))
    cfg = train.TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup_steps=2, hard_negatives=1,
                            checkpoint_every=3, user_budget=96, history_items=5, seed=5, **kw)
    return train.Trainer(model, train.training_pairs(split.train), items, items, cfg,
                         out_dir=tmp_path, progress=False)


def test_resume_gives_the_same_run_as_no_interruption(world_split, tmp_path):
    straight = _trainer(world_split, tmp_path / "a", steps=6)
    straight.fit()
    first = _trainer(world_split, tmp_path / "b", steps=6)
    first.fit(max_seconds=0.0)  # "interrupted" after one step; checkpoint written at the end
    assert first.state.step == 1
    resumed = _trainer(world_split, tmp_path / "b", steps=6)
    assert resumed.resumed_from == 1
    resumed.fit()
    want = [h["loss"] for h in straight.state.history]
    got = [h["loss"] for h in resumed.state.history]
    assert len(got) == 6  # no lost and no repeated steps
    np.testing.assert_allclose(got, want, rtol=2e-3)
    a, b = straight.model.adapter_state(), resumed.model.adapter_state()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=2e-3, atol=2e-5)


def test_resume_refuses_other_settings(world_split, tmp_path):
    _trainer(world_split, tmp_path, steps=2).fit()
    with pytest.raises(ValueError, match="different settings"):
        _trainer(world_split, tmp_path, steps=2, temperature=0.1)


def test_adapter_roundtrip_and_mismatch(world_split, tmp_path):
    t = _trainer(world_split, tmp_path, steps=2)
    t.fit()
    path = t.model.save_adapter(tmp_path / "adapter")
    # only LoRA matrices travel: the (resized) embedding matrix is rebuilt, never saved
    assert t.model.adapter_state() and all("lora_" in k for k in t.model.adapter_state())
    again = DualEncoder.from_adapter(path)
    texts = ["[ITEM] The Galactic Odyssey 1 (1999)"]
    torch.testing.assert_close(again.encode(texts, 32), t.model.encode(texts, 32), rtol=2e-2, atol=2e-2)
    other = DualEncoder(EncoderConfig(backbone="tiny-llama", n_layers=None, lora_r=4))
    with pytest.raises(ValueError, match="other settings"):
        other.load_adapter(path)


# ---- distributed: 2 CPU processes on the same global batch as 1 process -----------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step(batch_size: int) -> tuple[float, dict]:
    """One Trainer step on a fixed synthetic batch; returns the loss and the (averaged) grads."""
    w = synthetic.make_world(n_users=60, n_items=120, seed=3)
    split = data.per_user_split(w.ml.ratings)
    torch.manual_seed(0)
    model = DualEncoder(EncoderConfig(backbone="tiny-llama", n_layers=None, user_max_tokens=64,
                                      item_max_tokens=24))
    with torch.no_grad():  # LoRA's B starts at zero; make it non-zero so every grad is informative
        g = torch.Generator().manual_seed(1)
        for name, p in model.body.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    items = text.item_texts(w.ml.movies, fields=("title", "genres"))
    cfg = train.TrainConfig(steps=1, batch_size=batch_size, lr=1e-3, warmup_steps=0, user_budget=64,
                            history_items=4, seed=5, use_autocast=False)
    t = train.Trainer(model, train.training_pairs(split.train), items, items, cfg, progress=False)
    loss = t.step()
    grads = {n: p.grad.detach().clone() for n, p in model.body.named_parameters() if p.requires_grad}
    return loss, grads


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        loss, grads = _one_step(batch_size=4)
        torch.save({"loss": loss, "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    import torch.multiprocessing as mp

    one_loss, one_grads = _one_step(batch_size=8)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # the global batch's loss is the mean of the ranks' losses (each saw every rank's items as
    # negatives), and the averaged gradients equal the single process's
    assert np.mean([r["loss"] for r in ranks]) == pytest.approx(one_loss, rel=1e-4)
    assert any(g.abs().sum() > 0 for g in one_grads.values())
    for k, g in one_grads.items():
        torch.testing.assert_close(ranks[0]["grads"][k], g, rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(ranks[1]["grads"][k], g, rtol=1e-3, atol=1e-6)


def test_publish_records_how_the_adapter_was_made(world_split, tmp_path, monkeypatch):
    """The adapter's meta carries what it takes to remake it, the thread count included:
    other counts sum floats in another order, so a retrained adapter differs in its bits."""
    import json

    from llmrec_lib import recipes

    trainer = _trainer(world_split, tmp_path / "run", steps=2)
    trainer.fit()
    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path / "artifacts")
    path = recipes.publish(trainer, "tiny", seconds=1.0, command="python -m llmrec_lib.recipes train tiny")
    meta = json.loads((path / "encoder.json").read_text())["meta"]
    assert meta["steps_done"] == 2 and meta["command"].endswith("train tiny")
    assert f"threads={torch.get_num_threads()}" in meta["hardware"]
    assert list(pd.read_csv(path / "loss.csv").columns) == ["step", "loss"]


# ---- every-position training and the catalogue softmax ----------------------------------------

def _sequence_trainer(world_split, tmp_path, steps, **kw):
    w, split = world_split
    torch.manual_seed(0)
    model = DualEncoder(EncoderConfig(backbone="tiny-llama", n_layers=None, user_max_tokens=160,
                                      item_max_tokens=32))
    items = text.item_texts(w.ml.movies, fields=("title", "genres"))
    cfg = train.TrainConfig(steps=steps, batch_size=3, lr=1e-3, warmup_steps=2, checkpoint_every=3,
                            user_budget=160, positions=4, seed=5, use_autocast=False, **kw)
    pairs = train.training_pairs(split.train, positive_only=cfg.positive_only)
    return train.SequenceTrainer(model, pairs, items, items, cfg,
                                 out_dir=tmp_path, catalogue=w.ml.item_ids, progress=False)


def test_prefix_of_a_long_forward_is_the_short_prompt(world_split, tmp_path):
    """Every-position training rests on causal attention: the mean of the first L states of a
    long prompt equals the embedding of the L-token prompt on its own."""
    t = _sequence_trainer(world_split, tmp_path, steps=1)
    m = t.model
    with torch.no_grad():  # non-zero LoRA so the adapters are part of the check
        for name, p in m.body.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    batch = t.make_batch(0)
    tok = m.tokenize(batch["users"], t.cfg.user_budget)
    starts = [torch.nonzero(r == t.item_token).flatten() for r in tok["input_ids"]]
    rows, ends, shorts = [], [], []
    for r, n in zip(batch["rows"], batch["n_items"]):
        full = batch["users"][r]
        end = int(starts[r][n]) if n < len(starts[r]) else int(tok["attention_mask"][r].sum())
        rows.append(r)
        ends.append(end)
        shorts.append(m.tokenizer.decode(tok["input_ids"][r][:end]))
        assert full.startswith(shorts[-1])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        long = m.embed_prefixes(**tok, rows=torch.tensor(rows), ends=torch.tensor(ends))
        own = m.encode(shorts, t.cfg.user_budget)
    assert len(rows) >= 4
    torch.testing.assert_close(long, own, atol=3e-2, rtol=0)  # bf16 tolerance
    # and it is not trivially true: the full prompt's embedding differs from its prefixes'
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = m.encode([batch["users"][rows[0]]], t.cfg.user_budget)
    if ends[0] < int(tok["attention_mask"][rows[0]].sum()):
        assert (whole[0] - long[0]).abs().max() > 3e-2


def test_sequence_windows_keep_the_tie_rule_and_the_budget(world_split, tmp_path):
    t = _sequence_trainer(world_split, tmp_path, steps=1)
    for step in range(5):
        for user, start, stop, targets in t.windows(step):
            assert 0 < stop - start and len(targets) <= t.cfg.positions
            assert stop in targets  # the window ends at a target
            b = train.prefix_boundaries(t.seq_times, start, stop, targets)
            for j, n in zip(targets, b):
                prefix_times = t.seq_times[start : start + n]
                assert n >= 1 and (prefix_times < t.seq_times[j]).all()  # strictly earlier
                # nothing of the window strictly earlier than the target was left out
                assert (t.seq_times[start + n : stop] >= t.seq_times[j]).all()
    batch = t.make_batch(0)
    lens = text.count_tokens(t.model.tokenizer, batch["users"])
    assert (lens <= t.cfg.user_budget).all()
    assert len(batch["items"]) == len(batch["rows"]) > len(batch["users"])


def test_windows_are_user_balanced(world_split, tmp_path):
    t = _sequence_trainer(world_split, tmp_path, steps=1)
    drawn = [u for s in range(200) for u, *_ in t.windows(s)]
    counts = pd.Series(drawn).value_counts()
    n_pos = pd.Series(t.seq_count, index=t.seq_users)
    # heavy raters are drawn no more often than light ones (uniform over users)
    heavy, light = n_pos.nlargest(10).index, n_pos.nsmallest(10).index
    assert abs(counts.reindex(heavy).fillna(0).mean() - counts.reindex(light).fillna(0).mean()) < 4


def test_sequence_trainer_resumes_exactly_with_the_catalogue_loss(world_split, tmp_path):
    kw = dict(objective="catalogue", refresh_every=2)
    straight = _sequence_trainer(world_split, tmp_path / "a", steps=5, **kw)
    straight.fit()
    first = _sequence_trainer(world_split, tmp_path / "b", steps=5, **kw)
    first.fit(stop_at=2)
    resumed = _sequence_trainer(world_split, tmp_path / "b", steps=5, **kw)
    assert resumed.resumed_from == 2
    resumed.fit()
    want = [h["loss"] for h in straight.state.history]
    got = [h["loss"] for h in resumed.state.history]
    np.testing.assert_allclose(got, want, rtol=2e-3)
    # a full softmax over 120 items starts near log(120), above any in-batch loss here
    assert abs(want[0] - np.log(len(straight.catalogue))) < 1.0


def test_log_q_reaches_the_in_batch_loss(world_split, tmp_path):
    a = _sequence_trainer(world_split, tmp_path / "a", steps=1)
    b = _sequence_trainer(world_split, tmp_path / "b", steps=1, log_q=True)
    batch = a.make_batch(0)
    with torch.no_grad():
        la, lb = float(a.compute_loss(batch)), float(b.compute_loss(batch))
    assert b.item_log_q is not None and a.item_log_q is None
    assert abs(la - lb) > 1e-3


def test_mixed_negatives_are_shared_live_and_corrected(world_split, tmp_path):
    t = _sequence_trainer(world_split, tmp_path, steps=1, log_q=True, uniform_negatives=16)
    batch = t.make_batch(0)
    assert len(batch["shared"]) == 16 and len(set(batch["shared_ids"].tolist())) == 16
    assert np.array_equal(t.make_batch(0)["shared_ids"], batch["shared_ids"])  # a function of the step
    cols = torch.arange(len(t.catalogue))
    lq = t.sampling_log_q(cols, n_pairs=40)
    # an item never rated is still drawn uniformly: its log-probability is finite, and below a hit's
    assert torch.isfinite(lq).all() and lq.max() > lq.min()
    loss = t.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_an_early_stopped_run_stays_stopped_when_resumed(world_split, tmp_path):
    calls = []

    def falling(model):  # validation that only gets worse: stop after `patience` evaluations
        calls.append(1)
        return {"recall@50": 1.0 / len(calls)}

    t = _trainer(world_split, tmp_path, steps=12, eval_every=2, patience=2)
    t.evaluate_fn = falling
    t.fit()
    assert t.state.step == 6 and len(calls) == 3  # evaluated at 2, 4, 6; stopped
    again = _trainer(world_split, tmp_path, steps=12, eval_every=2, patience=2)
    again.evaluate_fn = falling
    again.fit()
    assert again.state.step == 6 and len(calls) == 3  # no more steps, no more evaluations


def test_configs_save_tuples_as_lists_and_read_back():
    """One rule turns every settings dataclass into what a checkpoint or an adapter stores."""
    import json

    from llmrec_lib import config

    cfg = train.TrainConfig(matryoshka_dims=(64, 32))
    assert cfg.to_dict() == config.json_ready(cfg) and cfg.to_dict()["matryoshka_dims"] == [64, 32]
    assert train.TrainConfig(matryoshka_dims=()).to_dict()["matryoshka_dims"] is None
    enc = EncoderConfig(lora_targets=("q_proj", "v_proj"))
    assert EncoderConfig.from_dict(json.loads(json.dumps(enc.to_dict()))) == enc


def test_sequence_hard_negatives_are_each_targets_users_dislikes(world_split, tmp_path):
    plain = _sequence_trainer(world_split, tmp_path / "a", steps=1, uniform_negatives=8)
    t = _sequence_trainer(world_split, tmp_path / "b", steps=1, uniform_negatives=8,
                          hard_negatives=2)
    batch, base = t.make_batch(0), plain.make_batch(0)
    # the recipe's other draws are untouched: same windows, targets and shared negatives
    assert batch["users"] == base["users"] and batch["items"] == base["items"]
    assert np.array_equal(batch["shared_ids"], base["shared_ids"])
    assert len(batch["hard"]) == 2 * len(batch["items"])
    by_text = {v: k for k, v in t.item_text.items()}
    for p, user in enumerate(batch["user_ids"]):
        pool = t.pairs.negatives.get(int(user))
        for h in batch["hard"][2 * p : 2 * p + 2]:
            if pool is not None and len(pool):
                assert by_text[h] in set(pool.tolist())
    with torch.no_grad():  # the hard negatives enter the softmax: the loss grows
        with_hard = float(t.compute_loss(batch))
        without = float(t.compute_loss(batch | {"hard": []}))
    assert with_hard > without


def test_full_history_windows_show_scores_and_end_at_positives(world_split, tmp_path):
    t = _sequence_trainer(world_split, tmp_path, steps=1, positive_only=False)
    assert t.seq_rating is not None and (t.seq_rating < 4).any()  # dislikes are in the prompts
    for step in range(5):
        for _, start, stop, targets in t.windows(step):
            assert stop in targets
            assert (t.seq_rating[targets] >= 4).all()  # a target is always a positive
            assert (train.prefix_boundaries(t.seq_times, start, stop, targets) >= 1).all()
    batch = t.make_batch(0)
    assert all(text.RATED in u for u in batch["users"])
    lens = text.count_tokens(t.model.tokenizer, batch["users"])
    assert (lens <= t.cfg.user_budget).all()  # the scores' tokens were budgeted
    loss = t.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)


def test_sequence_bce_takes_the_mixed_negatives_and_its_bias(world_split, tmp_path):
    kw = dict(uniform_negatives=8, log_q=True, loss="bce")
    low = _sequence_trainer(world_split, tmp_path / "a", steps=1, bce_bias=0.2, **kw)
    high = _sequence_trainer(world_split, tmp_path / "b", steps=1, bce_bias=0.6, **kw)
    batch = low.make_batch(0)
    with torch.no_grad():
        a, b = float(low.compute_loss(batch)), float(high.compute_loss(batch))
    assert np.isfinite(a) and np.isfinite(b) and abs(a - b) > 1e-2
    with pytest.raises(ValueError, match="catalogue"):
        _sequence_trainer(world_split, tmp_path / "c", steps=1, objective="catalogue", loss="bce")
