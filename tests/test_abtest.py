"""The A/B readout: Holm's adjustment, lifts that match hand computation, segments."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec_lib import abtest
from llmrec_lib.evaluate import MatrixScorer, evaluate
from tests.test_evaluate import random_data


def test_holm_against_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> running max 0.09, 0.5*1=0.5
    np.testing.assert_allclose(abtest.holm(p), [0.04, 0.09, 0.09, 0.5])
    assert abtest.holm([0.9, 0.9])[0] == 1.0  # capped at 1
    with pytest.raises(ValueError, match="probabilities"):
        abtest.holm([0.1, 1.5])


def _arms():
    data = random_data(n_users=80, seed=5)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(data.n_users, data.n_items)).astype(np.float32)
    truth = np.zeros_like(noise)
    for u, cols in enumerate(data.targets):
        truth[u, cols] = 1.0
    results = {
        "control": evaluate(MatrixScorer(noise, data.user_ids), data, ks=(10,), name="control"),
        "oracle-ish": evaluate(MatrixScorer(noise + 3 * truth, data.user_ids), data, ks=(10,), name="o"),
        "same": evaluate(MatrixScorer(noise, data.user_ids), data, ks=(10,), name="same"),
    }
    return data, results


def test_readout_lifts_and_verdicts():
    data, results = _arms()
    t = abtest.readout(results, "control", "recall@10", n_boot=300)
    c = results["control"].mean("recall@10")
    o = results["oracle-ish"].mean("recall@10")
    assert t.loc["oracle-ish", "lift"] == pytest.approx(o - c)
    assert t.loc["oracle-ish", "relative lift"] == pytest.approx((o - c) / c)
    assert t.loc["oracle-ish", "verdict"] == "better"
    assert t.loc["same", "lift"] == 0 and t.loc["same", "verdict"] == "no detectable difference"
    assert t.loc["control", "verdict"] == "control"
    assert (t["p (Holm)"].dropna() >= t["p"].dropna()).all()
    with pytest.raises(KeyError, match="control"):
        abtest.readout(results, "nope")


def test_segments_partition_users_and_targets():
    data, results = _arms()
    import pandas as pd

    # a fake training log: item popularity = column index (higher column, more ratings)
    cols = np.repeat(np.arange(data.n_items), np.arange(data.n_items) % 7)
    train = pd.DataFrame({"item_id": data.item_ids[cols]})
    seg = abtest.segment_masks(data, train, popular_share=0.2)
    short, long_ = seg["short history"]["users"], seg["long history"]["users"]
    assert len(short) + len(long_) == data.n_users and not set(short) & set(long_)
    pop, tail = seg["popular targets"]["targets"], seg["tail targets"]["targets"]
    assert (pop ^ tail).all()
    table = abtest.segment_table(results, {k: v for k, v in seg.items() if k != "cold targets"}, "recall@10", n_boot=100)
    assert set(table["segment"]) == {"short history", "long history", "popular targets", "tail targets"}
    assert table["mean"].between(0, 1).all()
