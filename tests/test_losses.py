"""Losses checked against plain loops written from their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmrec_lib import losses
from llmrec_lib.losses import BCELoss, InfoNCE, MatryoshkaLoss, false_negative_mask


def _emb(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _infonce_loop(u, v, h, t, mask=None):
    total = 0.0
    for i in range(len(u)):
        num = math.exp(float(u[i] @ v[i]) / t)
        den = sum(math.exp(float(u[i] @ v[j]) / t) for j in range(len(v)) if mask is None or not mask[i, j])
        if h is not None:
            den += sum(math.exp(float(u[i] @ h[i, k]) / t) for k in range(h.shape[1]))
        total += -math.log(num / den)
    return total / len(u)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_infonce_matches_formula(k):
    u, v = _emb(6, 8, seed=1), _emb(6, 8, seed=2)
    h = _emb(6, k, 8, seed=3) if k else None
    got = InfoNCE(temperature=0.1)(u, v, hard=h)
    assert got.item() == pytest.approx(_infonce_loop(u, v, h, 0.1), rel=1e-5)


def test_hard_negatives_raise_the_loss():
    u, v = _emb(4, 8, seed=1), _emb(4, 8, seed=2)
    h = _emb(4, 2, 8, seed=3)
    loss = InfoNCE(0.1)
    assert loss(u, v, hard=h) > loss(u, v)


def test_duplicate_item_in_batch_is_masked():
    u, v = _emb(4, 8, seed=1), _emb(4, 8, seed=2)
    v[3] = v[1]  # the same movie twice: for row 1, column 3 is not a negative
    ids = torch.tensor([10, 11, 12, 11])
    mask = false_negative_mask(ids, ids)
    assert mask.tolist() == [[False] * 4, [False, False, False, True], [False] * 4,
                             [False, True, False, False]]
    got = InfoNCE(0.1)(u, v, item_ids=ids)
    assert got.item() == pytest.approx(_infonce_loop(u, v, None, 0.1, mask), rel=1e-5)


def test_users_own_positives_are_masked():
    ids = torch.tensor([1, 2, 3])
    mask = false_negative_mask(ids, ids, user_positives=[{2}, set(), {1, 3}])
    assert mask.tolist() == [[False, True, False], [False, False, False], [True, False, False]]


def test_learned_temperature_gets_a_gradient():
    loss = InfoNCE(0.07, learn=True)
    u, v = _emb(5, 8, seed=1), _emb(5, 8, seed=2)
    loss(u, v).backward()
    assert loss.log_scale.grad is not None and loss.temperature == pytest.approx(0.07, rel=1e-4)


def test_bce_prefers_aligned_pairs():
    u = _emb(4, 8, seed=1)
    aligned = BCELoss(0.1)(u, u.clone())
    random = BCELoss(0.1)(u, _emb(4, 8, seed=5))
    assert aligned < random


def test_matryoshka_is_weighted_mean_of_prefix_losses():
    u, v = _emb(5, 16, seed=1), _emb(5, 16, seed=2)
    base = InfoNCE(0.1)
    m = MatryoshkaLoss(base, dims=[16, 8, 4], weights=[1.0, 1.0, 2.0])
    want = sum(w * base(F.normalize(u[:, :d], dim=-1), F.normalize(v[:, :d], dim=-1))
               for d, w in [(16, 1.0), (8, 1.0), (4, 2.0)]) / 4.0
    assert m(u, v).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError):
        MatryoshkaLoss(base, dims=[32])(u, v)


def test_matryoshka_weights_follow_their_dims_in_any_order():
    # ascending dims with unequal weights: 4 keeps weight 2.0 however the dims are listed
    u, v = _emb(5, 16, seed=1), _emb(5, 16, seed=2)
    base = InfoNCE(0.1)
    ascending = MatryoshkaLoss(base, dims=[4, 8, 16], weights=[2.0, 1.0, 0.5])
    descending = MatryoshkaLoss(base, dims=[16, 8, 4], weights=[0.5, 1.0, 2.0])
    assert ascending.dims == [16, 8, 4] and ascending.weights == [0.5, 1.0, 2.0]
    assert ascending(u, v).item() == pytest.approx(descending(u, v).item(), rel=1e-6)
    with pytest.raises(ValueError, match="more than once"):
        MatryoshkaLoss(base, dims=[16, 8, 16], weights=[1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="one weight per dimension"):
        MatryoshkaLoss(base, dims=[16, 8], weights=[1.0])


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(B, d\)"):
        InfoNCE()(_emb(4, 8), _emb(3, 8))
    with pytest.raises(ValueError, match=r"\(B, k, d\)"):
        InfoNCE()(_emb(4, 8), _emb(4, 8), hard=_emb(4, 8))


# ---- log-Q and the catalogue softmax ----------------------------------------------------------

def test_log_q_subtracts_the_sampling_log_probability():
    torch.manual_seed(0)
    u = F.normalize(torch.randn(5, 8), dim=-1)
    v = F.normalize(torch.randn(5, 8), dim=-1)
    lq = losses.log_q([10, 1, 1, 100, 3])
    assert torch.allclose(lq.exp().sum(), torch.tensor(1.0))
    got = losses.InfoNCE(0.1)(u, v, log_q=lq)
    logits = u @ v.T / 0.1 - lq[None, :]
    want = F.cross_entropy(logits, torch.arange(5))
    assert torch.allclose(got, want, atol=1e-5)
    # a uniform q is a constant shift: the loss does not move
    flat = losses.InfoNCE(0.1)(u, v, log_q=losses.log_q([4, 4, 4, 4, 4]))
    assert torch.allclose(flat, losses.InfoNCE(0.1)(u, v), atol=1e-5)


def test_catalogue_softmax_is_cross_entropy_over_the_table_with_live_positives():
    torch.manual_seed(0)
    table = F.normalize(torch.randn(50, 8), dim=-1)
    users = F.normalize(torch.randn(4, 8), dim=-1)
    cols = torch.tensor([3, 7, 7, 40])
    live = F.normalize(table[cols] + 0.3 * torch.randn(4, 8), dim=-1)
    mask = torch.zeros(4, 50, dtype=torch.bool)
    mask[0, [1, 3]] = True  # the own column is never masked
    got = losses.CatalogueSoftmax(0.05)(users, live, table=table, columns=cols, mask=mask)
    logits = users @ table.T / 0.05
    logits[0, 1] = float("-inf")
    want = F.cross_entropy(logits, cols)
    assert torch.allclose(got, want, atol=1e-4)  # the positive is valued at its cached row
    # ... but its gradient reaches the live vector
    live.requires_grad_(True)
    losses.CatalogueSoftmax(0.05)(users, live, table=table, columns=cols).backward()
    assert live.grad is not None and live.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="columns"):
        losses.CatalogueSoftmax(0.05)(users, live, table=table, columns=torch.tensor([0, 1, 2, 50]))


def test_shared_negatives_join_the_denominator_with_their_correction():
    torch.manual_seed(0)
    u = F.normalize(torch.randn(3, 8), dim=-1)
    v = F.normalize(torch.randn(3, 8), dim=-1)
    sh = F.normalize(torch.randn(4, 8), dim=-1)
    ids = torch.tensor([10, 11, 12])
    sh_ids = torch.tensor([11, 20, 21, 22])  # 11 is row 1's own positive: masked for row 1
    lq, slq = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-4.0, -4.0, -4.0, -4.0])
    got = losses.InfoNCE(0.1)(u, v, item_ids=ids, log_q=lq, shared=sh, shared_ids=sh_ids, shared_log_q=slq)
    logits = torch.cat([u @ v.T / 0.1 - lq[None, :], u @ sh.T / 0.1 - slq[None, :]], dim=1)
    logits[1, 3] = float("-inf")
    assert torch.allclose(got, F.cross_entropy(logits, torch.arange(3)), atol=1e-5)


def test_bce_corrects_logits_and_counts_shared_negatives_once_each():
    """BCE with log-Q and shared negatives, against the formula written out by hand."""
    torch.manual_seed(1)
    u = F.normalize(torch.randn(2, 4), dim=-1)
    v = F.normalize(torch.randn(2, 4), dim=-1)
    s = F.normalize(torch.randn(3, 4), dim=-1)
    lq, slq = torch.tensor([-1.0, -2.0]), torch.tensor([-0.5, -1.5, -3.0])
    ids, sids = torch.tensor([10, 11]), torch.tensor([11, 12, 13])  # shared 11 is row 1's own
    loss = losses.BCELoss(0.1, bias=0.3)(u, v, item_ids=ids, log_q=lq, shared=s,
                                          shared_ids=sids, shared_log_q=slq)
    z = (u @ v.T - 0.3) / 0.1 - lq[None, :]
    zs = (u @ s.T - 0.3) / 0.1 - slq[None, :]
    pos = F.binary_cross_entropy_with_logits(z.diagonal(), torch.ones(2))
    negs = torch.cat([z[0, 1:], z[1, :1], zs[0], zs[1, 1:]])  # row 1 drops shared item 11
    neg = F.binary_cross_entropy_with_logits(negs, torch.zeros(len(negs)))
    torch.testing.assert_close(loss, pos + neg)
