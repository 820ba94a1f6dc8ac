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
    """A recommender funnel: (stage name, how many items survive it) from wide to narrow."""
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
    """LinkedIn's single LLM dual encoder next to RecGPT's chain of LLMs and three towers."""
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
    """Each row a user; each dot a rating, coloured by where the split put it."""
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
    """Horizontal bars with 95% intervals, one per row of ``table``."""
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
