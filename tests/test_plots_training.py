"""Chapter 03's training figures: LoRA's update and the InfoNCE logit matrix draw what they are
given, and refuse inputs that contradict the loss."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from llmrec_lib import losses, plots  # noqa: E402

# one SmolLM2 layer: (name, d_in, d_out, adapted by LoRA)
LAYER = [("q_proj", 576, 576, True), ("k_proj", 576, 192, True), ("v_proj", 576, 192, True),
         ("o_proj", 576, 576, True), ("gate_proj", 576, 1536, False), ("up_proj", 576, 1536, False),
         ("down_proj", 1536, 576, False)]


def test_lora_figure_counts_the_adapted_projections_only():
    fig = plots.lora_figure(LAYER, r=8, alpha=16)
    left, right = fig.axes[:2]
    assert "16/8 = 2" in left.get_title()
    labels = [t.get_text().strip() for t in right.texts]
    assert labels.count("not adapted") == 3  # the MLP
    assert "+9.2k" in labels and "+6.1k" in labels  # q: 8 * (576 + 576), k: 8 * (576 + 192)
    plt.close(fig)


def test_lora_figure_refuses_nothing_to_adapt_and_a_bad_rank():
    with pytest.raises(ValueError, match="no projection is adapted"):
        plots.lora_figure([(n, i, o, False) for n, i, o, _ in LAYER], r=8, alpha=16)
    with pytest.raises(ValueError, match="r >= 1"):
        plots.lora_figure(LAYER, r=0, alpha=16)


def test_logit_matrix_figure_from_the_library_mask():
    ids = torch.tensor([5, 7, 5, 9])
    liked = [{9}, set(), set(), {5}]
    masked = losses.false_negative_mask(ids, ids, user_positives=liked).numpy()
    dup = losses.false_negative_mask(ids, ids).numpy()
    logits = np.random.default_rng(0).normal(size=(4, 4 + 2))
    fig = plots.logit_matrix_figure(logits, masked, n_hard=2, duplicate=dup)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert dup.sum() == 2  # rows 0 and 2 share movie 5
    assert legend[1].endswith(f"({int((masked & ~dup).sum())})") and legend[2].endswith("(2)")
    plt.close(fig)


def test_logit_matrix_figure_refuses_a_masked_positive_and_wrong_shapes():
    masked = np.zeros((3, 3), dtype=bool)
    with pytest.raises(ValueError, match="B \\+ n_hard"):
        plots.logit_matrix_figure(np.zeros((3, 3)), masked, n_hard=1)
    masked[1, 1] = True
    with pytest.raises(ValueError, match="never masked"):
        plots.logit_matrix_figure(np.zeros((3, 3)), masked)
    with pytest.raises(ValueError, match="subset"):
        plots.logit_matrix_figure(np.zeros((3, 3)), np.zeros((3, 3), bool),
                                  duplicate=np.eye(3, dtype=bool))
