"""Figures the chapters share: the two designs as diagrams, split timelines, bars with intervals.

Every function returns the matplotlib Figure and never calls ``plt.show()``: the notebook shows
the returned figure as PNG (the book never uses SVG, which nbval would compare byte by byte).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

COLORS = {"history": "#4C72B0", "valid": "#DD8452", "test": "#C44E52", "other": "#BBBBBB",
          "llm": "#8172B3", "dnn": "#55A868", "data": "#937860", "index": "#DA8BC3"}


def _box(ax, x, y, w, h, text, color, fontsize=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.05",
                                fc=color, ec="black", lw=0.8, alpha=0.85))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, wrap=True)


def _arrow(ax, x0, y0, x1, y1):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, lw=1))


def funnel_figure(stages: list[tuple[str, str]]) -> plt.Figure:
    """A recommender funnel, from the whole catalogue down to what a ranker scores.

    Args:
        stages: (stage name, how many items survive it), from wide to narrow.

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(8, 3.2))
    n = len(stages)
    for i, (name, size) in enumerate(stages):
        w = 1.0 - 0.55 * i / max(n - 1, 1)
        _box(ax, (1 - w) / 2, n - 1 - i, w, 0.8, f"{name}\n{size}",
             [COLORS["data"], COLORS["llm"], COLORS["dnn"], COLORS["index"]][i % 4])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.1, n)
    ax.axis("off")
    ax.set_title("Candidate generation narrows a huge catalogue to what a ranker can afford")
    return fig


def designs_figure() -> plt.Figure:
    """LinkedIn's single LLM dual encoder [linkedin2025retrieval] next to RecGPT's chain of
    LLMs and three towers [recgpt2025].

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    ax.set_title("LinkedIn (arXiv 2510.14223): one LLM encodes members and items")
    _box(ax, 0.0, 0.62, 0.42, 0.22, "member prompt:\nprofile + engaged posts (text)", COLORS["data"])
    _box(ax, 0.55, 0.62, 0.42, 0.22, "item prompt:\npost text + features (text)", COLORS["data"])
    _box(ax, 0.15, 0.33, 0.7, 0.16, "shared causal LLM (LoRA fine-tuned)\nmean-pooled token states",
         COLORS["llm"])
    _box(ax, 0.0, 0.05, 0.42, 0.16, "member vector\n(Matryoshka: 3072 -> 512 d)", COLORS["dnn"])
    _box(ax, 0.55, 0.05, 0.42, 0.16, "item vectors in a\nGPU kNN index", COLORS["index"])
    _arrow(ax, 0.21, 0.62, 0.35, 0.49)
    _arrow(ax, 0.76, 0.62, 0.65, 0.49)
    _arrow(ax, 0.35, 0.33, 0.21, 0.21)
    _arrow(ax, 0.65, 0.33, 0.76, 0.21)
    ax.annotate("cosine similarity, InfoNCE (in-batch + hard negatives)", (0.485, 0.255), ha="center", fontsize=7)
    ax = axes[1]
    ax.set_title("RecGPT (arXiv 2507.22879): LLMs write text, a DNN retrieves")
    _box(ax, 0.0, 0.74, 0.3, 0.18, "lifelong history\n(compressed text)", COLORS["data"])
    _box(ax, 0.35, 0.74, 0.3, 0.18, "LLM_UI:\nuser interests", COLORS["llm"])
    _box(ax, 0.7, 0.74, 0.3, 0.18, "LLM_IT: tags\n(\"modifier + core\")", COLORS["llm"])
    _box(ax, 0.0, 0.38, 0.3, 0.2, "user tower\n(ID + behaviour)", COLORS["dnn"])
    _box(ax, 0.35, 0.38, 0.3, 0.2, "item tower\n(ID, category, ...)", COLORS["dnn"])
    _box(ax, 0.7, 0.38, 0.3, 0.2, "tag tower\n(tag tokens -> MLP)", COLORS["dnn"])
    _box(ax, 0.1, 0.04, 0.8, 0.18, "h = b * h_user + (1 - b) * h_tag  ->  kNN over item vectors\n"
         "LLM_RE explains each item in a few words", COLORS["index"])
    _arrow(ax, 0.3, 0.83, 0.35, 0.83)
    _arrow(ax, 0.65, 0.83, 0.7, 0.83)
    _arrow(ax, 0.85, 0.74, 0.85, 0.58)
    _arrow(ax, 0.15, 0.38, 0.3, 0.22)
    _arrow(ax, 0.85, 0.38, 0.7, 0.22)
    _arrow(ax, 0.5, 0.38, 0.5, 0.22)
    for a in axes:
        a.set_xlim(-0.02, 1.02)
        a.set_ylim(0, 0.95)
        a.axis("off")
    fig.tight_layout()
    return fig


def split_timeline_figure(split, user_ids, titles: dict | None = None) -> plt.Figure:
    """Each row a user; each dot a rating, coloured by where the split put it.

    Args:
        split: a :class:`llmrec_lib.data.Split` (its train, valid and test windows).
        user_ids: the users drawn, one row each, top to bottom.
        titles: optional texts; ``"title"`` replaces the default title.

    Returns:
        The figure.
    """
    parts = [("history", split.train), ("valid", split.valid_window), ("test", split.test_window)]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(user_ids) + 1.2))
    for row, user in enumerate(user_ids):
        for name, frame in parts:
            ts = frame.loc[frame["user_id"] == user, "timestamp"]
            ax.scatter(pd.to_datetime(ts, unit="s"), np.full(len(ts), row), s=9,
                       color=COLORS[name], label=name if row == 0 else None)
    ax.set_yticks(range(len(user_ids)), [f"user {u}" for u in user_ids])
    ax.set_xlabel("time of rating")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title((titles or {}).get("title", "Per-user split: each user's last positives are held out"))
    fig.tight_layout()
    return fig


def bars_with_ci(table: pd.DataFrame, value: str, lo: str, hi: str, label: str,
                 title: str, ax=None, color=None) -> plt.Figure:
    """Horizontal bars with 95% intervals, one per row of ``table``.

    Args:
        table: one row per bar.
        value: the column of bar lengths.
        lo: the column of interval lower ends.
        hi: the column of interval upper ends.
        label: the column of bar labels.
        title: the axes' title.
        ax: draw into these axes (None: a new figure).
        color: the bars' colour (None: ``COLORS["history"]``).

    Returns:
        The figure the bars are in.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(table) + 1.2))
    else:
        fig = ax.figure
    y = np.arange(len(table))
    v = table[value].to_numpy(float)
    err = np.vstack([v - table[lo].to_numpy(float), table[hi].to_numpy(float) - v])
    ax.barh(y, v, xerr=err, color=color or COLORS["history"], capsize=3)
    ax.set_yticks(y, table[label].tolist())
    ax.invert_yaxis()
    ax.set_xlabel(value)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def lora_figure(projections: list[tuple[str, int, int, bool]], r: int, alpha: float) -> plt.Figure:
    """LoRA in one picture: W + (alpha/r) B A for one projection, and what it adapts in a layer.

    The left panel draws the first adapted projection's frozen W (d_out x d_in) beside B
    (d_out x r) and A (r x d_in), to scale; the right panel counts, per projection, the frozen
    weights and the LoRA weights r (d_in + d_out) added to it [hu2022lora].

    Args:
        projections: (name, d_in, d_out, adapted) for every weight matrix of one transformer
            layer, as the model has them.
        r: the LoRA rank.
        alpha: the LoRA scale numerator (the update is scaled by alpha / r).

    Returns:
        The figure.
    """
    adapted = [p for p in projections if p[3]]
    if not adapted:
        raise ValueError("no projection is adapted: nothing for LoRA to draw")
    if r < 1 or alpha <= 0:
        raise ValueError(f"need r >= 1 and alpha > 0, got r={r}, alpha={alpha}")
    name, d_in, d_out, _ = adapted[0]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1.25, 1]})
    s = 1.0 / max(d_in, d_out)  # axis units per weight row/column: everything to scale
    w, h, t = d_in * s, d_out * s, r * s
    gap = 0.34
    x_b = w + gap  # B (d_out x r), then A (r x d_in) to its right, level with B's top
    x_a = x_b + t + gap * 0.5
    ax.add_patch(plt.Rectangle((0, 0), w, h, fc=COLORS["other"], ec="black", lw=0.8))
    ax.text(w / 2, h / 2, f"W\n{d_out} x {d_in}\nfrozen", ha="center", va="center", fontsize=9)
    ax.text(w / 2, -0.05, f"{d_in * d_out:,} weights", ha="center", va="top", fontsize=8)
    ax.add_patch(plt.Rectangle((x_b, 0), t, h, fc=COLORS["llm"], ec=COLORS["llm"], lw=0.8))
    ax.text(x_b + t / 2, -0.05, f"B\n{d_out} x {r}\nzero at start", ha="center", va="top", fontsize=8)
    ax.add_patch(plt.Rectangle((x_a, h - t), w, t, fc=COLORS["llm"], ec=COLORS["llm"], lw=0.8))
    ax.text(x_a + w / 2, h - t - 0.04, f"A: {r} x {d_in}, random at start", ha="center", va="top", fontsize=8)
    ax.text((w + x_b) / 2, h / 2, f"+ {alpha:g}/{r} \u00d7", ha="center", va="center", fontsize=10)
    ax.text(x_b + t + gap * 0.25, h - t / 2, "\u00d7", ha="center", va="center", fontsize=10)
    lora = r * (d_in + d_out)
    ax.text(x_a + w / 2, h * 0.42,
            f"B A has rank {r}:\n{lora:,} trainable weights,\n{lora / (d_in * d_out):.1%} of W's",
            ha="center", va="center", fontsize=9)
    ax.set_xlim(-0.05, x_a + w + 0.05)
    ax.set_ylim(-0.3, h + 0.05)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{name}: W' = W + (alpha / r) B A, with alpha / r = {alpha:g}/{r} = {alpha / r:g}",
                 fontsize=10)

    names = [p[0] for p in projections]
    frozen = np.array([p[1] * p[2] for p in projections], dtype=float)
    extra = np.array([r * (p[1] + p[2]) if p[3] else 0 for p in projections], dtype=float)
    y = np.arange(len(projections))
    bx.barh(y, frozen / 1e3, color=COLORS["other"], label="frozen weights")
    bx.barh(y, extra / 1e3, left=frozen / 1e3, color=COLORS["llm"], label=f"LoRA weights (r={r})")
    for yi, (f, e) in enumerate(zip(frozen, extra)):
        bx.text(f / 1e3, yi, f"  +{e / 1e3:.1f}k" if e else "  not adapted", va="center", fontsize=8)
    bx.set_yticks(y, names)
    bx.invert_yaxis()
    bx.set_xlim(0, frozen.max() / 1e3 * 1.35)
    bx.set_xlabel("weights in one layer (thousands)")
    bx.legend(fontsize=8, loc="upper right")
    share = extra.sum() / frozen.sum()
    bx.set_title(f"One layer: LoRA adds {share:.1%} to its weights, in attention only", fontsize=10)
    fig.tight_layout()
    return fig


def logit_matrix_figure(logits: np.ndarray, masked: np.ndarray, n_hard: int = 0,
                        duplicate: np.ndarray | None = None, title: str | None = None) -> plt.Figure:
    """The InfoNCE logit matrix of one batch: rows are members, columns their candidates.

    Args:
        logits: (B, B + n_hard) s(u_i, v_j) / t for the B in-batch columns (column i is row
            i's positive), then row i's own ``n_hard`` hard negatives.
        masked: (B, B) True where a column is removed from row i's softmax
            (``losses.false_negative_mask``).
        n_hard: hard negatives per row.
        duplicate: a subset of ``masked``: the cells masked because they hold row i's own
            movie (drawn darker than the cells masked because the member already liked that
            movie).
        title: the axes' title (None: a default).

    Returns:
        The figure.
    """
    logits = np.asarray(logits, dtype=float)
    masked = np.asarray(masked, dtype=bool)
    b = logits.shape[0]
    if logits.ndim != 2 or logits.shape[1] != b + n_hard:
        raise ValueError(f"logits must be (B, B + n_hard) = ({b}, {b + n_hard}), got {logits.shape}")
    if masked.shape != (b, b):
        raise ValueError(f"masked must be (B, B) = ({b}, {b}), got {masked.shape}")
    if masked[np.arange(b), np.arange(b)].any():
        raise ValueError("a row's own positive (the diagonal) is never masked")
    dup = np.zeros_like(masked) if duplicate is None else np.asarray(duplicate, dtype=bool)
    if dup.shape != masked.shape or (dup & ~masked).any():
        raise ValueError("duplicate must be a (B, B) subset of masked")
    full_mask = np.zeros(logits.shape, dtype=bool)
    full_mask[:, :b] = masked
    fig, ax = plt.subplots(figsize=(7.2, 5.2))
    im = ax.imshow(np.where(full_mask, np.nan, logits), cmap="viridis", aspect="equal")
    grey = np.full(logits.shape, np.nan)
    grey[:, :b][masked & ~dup] = 0.35  # already liked by the member
    grey[:, :b][dup] = 0.8  # the same movie as the row's positive
    ax.imshow(grey, cmap="Greys", vmin=0, vmax=1, aspect="equal")
    for i in range(b):  # the positives
        ax.add_patch(plt.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.4))
    below = ax.get_xaxis_transform()  # x in columns, y in axes fractions
    ax.text((b - 1) / 2, -0.03, f"in-batch columns: the batch's {b} positives", transform=below,
            ha="center", va="top", fontsize=8)
    if n_hard:
        ax.axvline(b - 0.5, color="white", lw=3)
        ax.axvline(b - 0.5, color="black", lw=0.8)
        ax.text(b - 0.5 + n_hard / 2, -0.03, f"{n_hard} hard\nnegatives\n(row i's own)",
                transform=below, ha="center", va="top", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel("row i: one member prompt")
    handles = [plt.Rectangle((0, 0), 1, 1, fill=False, ec="red", lw=1.4, label="positive (diagonal)"),
               plt.Rectangle((0, 0), 1, 1, fc=plt.cm.Greys(0.35),
                             label=f"masked: member liked it before ({int((masked & ~dup).sum())})"),
               plt.Rectangle((0, 0), 1, 1, fc=plt.cm.Greys(0.8),
                             label=f"masked: same movie as the positive ({int(dup.sum())})")]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
              frameon=False)
    fig.colorbar(im, ax=ax, label="cos(u_i, v_j) / τ", fraction=0.04, pad=0.02)
    ax.set_title(title or "One InfoNCE batch: each row is a softmax over its unmasked cells", fontsize=10)
    fig.tight_layout()
    return fig
