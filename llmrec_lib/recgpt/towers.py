"""RecGPT's three-tower retrieval model [recgpt2025], chapter 08.

RecGPT does not retrieve with the LLM itself. The LLM writes *tags* ("modifier + core word"
phrases describing what a user may want next), and a classic retrieval model with three towers
turns them into items:

* **item tower**: item ID + genres + release decade + popularity bucket -> MLP -> ``h_v``
  (RecGPT: ID, category, brand, discretised price and sales);
* **user tower**: user ID + mean of the embeddings of the user's latest positives -> MLP -> ``h_u``;
* **tag tower**: mean of the (frozen) token embeddings of a tag's text -> MLP -> ``h_t``.

Two scores share the item tower: ``y_col = h_u . h_v`` (collaborative) and ``y_sem = h_t . h_v``
(semantic). Training minimises ``L = L_col + a L_tag + (1 - a) L_cate``, three in-batch softmax
losses: ``L_col`` pairs a user with the item they liked next, ``L_tag`` pairs a tag with an item
it describes, ``L_cate`` counts every item of the batch in the tag's category as a positive.
At inference ``h = b h_u + (1 - b) h_t`` scores the catalogue, i.e. ``y = b y_col + (1 - b) y_sem``.

The tag tower reads **frozen token embeddings** of a small pretrained encoder (MiniLM's input
word-piece table, no transformer layers): a tag the model never saw in training ("gritty heist
thriller") still lands near tags made of related words, which a word table learned from a few
thousand tags could not do, and it costs one table lookup per token.

Explanations of what the model retrieves (RecGPT's LLM_RE) and their judges live in
:mod:`llmrec_lib.recgpt.explanations`.

Usage::

    feats = ItemFeatures.build(ml.movies, split.train, ml.item_ids)
    vocab = TagVocab.build(all_tags, token_table)
    model = ThreeTowerModel(feats, vocab, item_tags, tag_category, TowerConfig(alpha=0.5)).fit(split.train)
    system = model.system(split, "test", user_tags, b=0.5)      # evaluate.evaluate(system, ...)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from llmrec_lib import config, data, interactions, text

__all__ = [
    "TowerConfig",
    "ItemFeatures",
    "TagVocab",
    "token_embedding_vectors",
    "training_pairs",
    "ThreeTowerNet",
    "ThreeTowerModel",
    "fit_all",
    "FusedSystem",
    "recent_tags",
    "tower_losses",
    "item_tag_masks",
    "history_tag_masks",
    "primary_categories",
    "nearest_tag_agreement",
    "MODES",
    "BETAS",
    "build",
]

UNKNOWN_DECADE = 0
_SET_CACHE: dict = {}  # ThreeTowerModel._history_sets: one (tagger, pairs) -> tag sets entry


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


@dataclass
class TowerConfig:
    """Hyper-parameters of :class:`ThreeTowerModel`.

    ``alpha`` is the paper's ``a`` (0.5 in RecGPT): the weight of the exact tag-item loss
    against the category-level one. ``tag_source`` says what the tag tower reads in training:
    ``"item"``, one of the target item's own tags (a tag paired with an item it describes), or
    ``"history"``, the tags a tag predictor gives the user from their positives *before* the
    target (the tag tower trained as it is used: the user's tags at t -> the item at t; needs
    ``history_tagger``). ``temperature`` divides the cosine scores of all three
    losses. ``max_history`` is how many of the latest positives the user tower averages.
    """

    dim: int = 64
    hidden: int = 128
    max_history: int = 50
    alpha: float = 0.5
    temperature: float = 0.1
    epochs: int = 6
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    dropout: float = 0.1
    user_id: bool = True  # the user tower reads a user ID embedding (RecGPT does); False: history only
    tag_source: str = "item"  # "item": a tag of the target item; "history": the user's tags before t
    logq: bool = True  # subtract log(in-batch sampling probability) of each candidate item
    seed: int = 0
    num_threads: int | None = 1  # a small model: one thread is faster than two busy ones
    max_seconds: float | None = None  # stop after this long (quick mode's budget)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (the paper's a) must be in [0, 1], got {self.alpha!r}")
        if self.dim < 1 or self.hidden < 1 or self.max_history < 1 or self.epochs < 1 or self.batch_size < 2:
            raise ValueError("need dim, hidden, max_history, epochs >= 1 and batch_size >= 2")
        if not self.temperature > 0 or not 0 <= self.dropout < 1:
            raise ValueError("need temperature > 0 and 0 <= dropout < 1")
        if self.tag_source not in ("item", "history"):
            raise ValueError(f"tag_source must be 'item' or 'history', got {self.tag_source!r}")


# --------------------------------------------------------------------------------------
# Item features
# --------------------------------------------------------------------------------------


@dataclass
class ItemFeatures:
    """Side features of every catalogue item, in catalogue column order (``ml.item_ids``).

    ``id_index``: 1..n_warm for items with a training rating, 0 for cold items (their ID
    embedding is the zero padding row: a cold item is scored from its features alone).
    ``genres``: (n_items, n_genres) multi-hot. ``decade``: index into ``decades`` (0 =
    unknown year). ``pop``: popularity bucket from training ratings (``text.popularity_buckets``).
    """

    item_ids: np.ndarray
    id_index: np.ndarray
    genres: np.ndarray
    genre_names: list[str]
    decade: np.ndarray
    decades: list[str]
    pop: np.ndarray
    n_pop: int

    @classmethod
    def build(cls, movies: pd.DataFrame, train: pd.DataFrame, item_ids, n_pop: int = text.N_BUCKETS) -> "ItemFeatures":
        """From ``ml.movies`` (``genres`` as lists, ``year``) and the *training* ratings only."""
        data.require_columns(movies, ("item_id", "genres", "year"), "movies",
                             "Pass ml.movies from data.load_movielens.")
        item_ids = np.asarray(item_ids, dtype=np.int64)
        m = movies.set_index("item_id")
        absent = pd.Index(item_ids).difference(m.index)
        if len(absent):
            raise ValueError(f"{len(absent)} catalogue items are not in movies (e.g. {list(absent[:5])})")
        m = m.loc[item_ids]
        counts = text.popularity_counts(train, item_ids)  # training ratings only: no leak
        warm = counts.to_numpy() > 0
        id_index = np.zeros(len(item_ids), dtype=np.int64)
        id_index[warm] = np.arange(1, int(warm.sum()) + 1)
        genre_lists = [list(g) if isinstance(g, (list, tuple, np.ndarray)) else [] for g in m["genres"]]
        names = sorted({g for gs in genre_lists for g in gs})
        gpos = {g: i for i, g in enumerate(names)}
        genres = np.zeros((len(item_ids), len(names)), dtype=np.float32)
        for row, gs in enumerate(genre_lists):
            genres[row, [gpos[g] for g in gs]] = 1.0
        years = pd.array(m["year"], dtype="Int64")
        dec = np.array([(int(y) // 10) * 10 if not pd.isna(y) else -1 for y in years], dtype=np.int64)
        uniq = sorted(set(dec[dec >= 0].tolist()))
        dpos = {d: i + 1 for i, d in enumerate(uniq)}
        decade = np.array([dpos.get(int(d), UNKNOWN_DECADE) for d in dec], dtype=np.int64)
        pop = text.popularity_buckets(counts, n_pop).to_numpy(np.int64)
        return cls(item_ids=item_ids, id_index=id_index, genres=genres, genre_names=names, decade=decade,
                   decades=["unknown"] + [f"{d}s" for d in uniq], pop=pop, n_pop=n_pop)

    @property
    def n_items(self) -> int:
        """Catalogue items (columns), cold ones included."""
        return len(self.item_ids)

    @property
    def n_warm(self) -> int:
        """Items with a training rating, hence an ID embedding row (1..n_warm)."""
        return int(self.id_index.max())

    def columns(self, ids) -> np.ndarray:
        """Catalogue columns of item ids (unknown ids raise)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.item_ids, ids), 0, self.n_items - 1)
        if not (self.item_ids[pos] == ids).all():
            bad = ids[self.item_ids[pos] != ids][:5].tolist()
            raise ValueError(f"item ids {bad} are not in the catalogue; build ItemFeatures over ml.item_ids")
        return pos

    def genre_index(self, genre: str | None) -> int:
        """Column of a genre in :attr:`genres`, or -1 when it is not a known genre."""
        try:
            return self.genre_names.index(genre) if genre is not None else -1
        except ValueError:
            return -1


# --------------------------------------------------------------------------------------
# Tag text -> frozen vectors
# --------------------------------------------------------------------------------------


def token_embedding_vectors(texts: Sequence[str], tokenizer, table) -> np.ndarray:
    """(len(texts), dim) mean of the input token embeddings of each text, no special tokens.

    ``table`` is an input embedding matrix (``backbone.model.get_input_embeddings().weight``).
    This is the paper's "mean of token embeddings": a lookup, not a transformer forward. A text
    with no token (empty) gets the zero vector.

    Args:
        texts: the texts (tags) to encode.
        tokenizer: the backbone's tokenizer (called with ``add_special_tokens=False``).
        table: the input embedding matrix, (vocab, dim), a tensor or an array.

    Returns:
        The (len(texts), dim) float32 vectors.
    """
    w = table.detach().float().cpu() if hasattr(table, "detach") else torch.as_tensor(np.asarray(table), dtype=torch.float32)
    out = np.zeros((len(texts), w.shape[1]), dtype=np.float32)
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(enc):
        if ids:
            out[i] = w[torch.as_tensor(ids)].mean(0).numpy()
    return out


@dataclass
class TagVocab:
    """Tag strings and their frozen token-embedding vectors, with a string -> row lookup.

    :meth:`vectors_for` encodes tags it has not seen (an LLM's new phrasing) with the same
    token table, so inference is never limited to the tags seen in training.
    """

    tags: list[str]
    vectors: np.ndarray  # (n_tags, d_text) float32
    tokenizer: object = field(repr=False)
    table: object = field(repr=False)

    @classmethod
    def build(cls, tags: Sequence[str], tokenizer, table) -> "TagVocab":
        """The vocabulary of the distinct normalised ``tags`` (sorted), each encoded by
        :func:`token_embedding_vectors` with ``tokenizer`` and ``table``; no tag at all raises.
        """
        uniq = sorted({normalise_tag(t) for t in tags if normalise_tag(t)})
        if not uniq:
            raise ValueError("no non-empty tag to build a vocabulary from")
        return cls(uniq, token_embedding_vectors(uniq, tokenizer, table), tokenizer, table)

    @classmethod
    def from_backbone(cls, tags: Sequence[str], backbone) -> "TagVocab":
        """Use a :class:`backbones.Backbone`'s tokenizer and input embedding table (frozen)."""
        return cls.build(tags, backbone.tokenizer, backbone.model.get_input_embeddings().weight)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tags)}

    @property
    def dim(self) -> int:
        """The width of a tag vector (the token table's)."""
        return int(self.vectors.shape[1])

    def rows(self, tags: Sequence[str]) -> np.ndarray:
        """Row of each (normalised) tag; unknown tags raise."""
        out = []
        for t in tags:
            key = normalise_tag(t)
            if key not in self.index:
                raise KeyError(f"tag {t!r} is not in the vocabulary; use vectors_for() for new tags")
            out.append(self.index[key])
        return np.asarray(out, dtype=np.int64)

    def vectors_for(self, tags: Sequence[str]) -> np.ndarray:
        """(len(tags), d_text) vectors, from the table for known tags, encoded for new ones."""
        keys = [normalise_tag(t) for t in tags]
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        new = [i for i, k in enumerate(keys) if k not in self.index]
        known = [i for i, k in enumerate(keys) if k in self.index]
        if known:
            out[known] = self.vectors[[self.index[keys[i]] for i in known]]
        if new:
            out[new] = token_embedding_vectors([keys[i] for i in new], self.tokenizer, self.table)
        return out


def nearest_tag_agreement(vocab: TagVocab, tag_category: Callable[[str], str],
                          tag_categories: Callable[[str], Sequence[str]], *, share_words: bool,
                          unmapped: str = "(unmapped)") -> pd.DataFrame:
    """Does a tag's nearest other vocabulary tag (cosine of the frozen vectors) name its
    category? One row per tag with a category: ``tag``, ``nearest``, ``hit``, and ``chance``,
    the share of the candidates that name it (what a random pick would score).

    ``share_words=False`` leaves out every candidate that shares a word with the tag: the
    test of the pretrained table alone, as for an LLM phrase whose words no item tag has.

    Args:
        vocab: the tag vocabulary and its frozen vectors.
        tag_category: tag -> its head category (``unmapped`` for none).
        tag_categories: tag -> every category it names (a candidate hits when it names the tag's).
        share_words: allow candidates that share a word with the tag.
        unmapped: the value ``tag_category`` gives a tag without a category.

    Returns:
        One row per tag with a category: tag, nearest, hit, chance.
    """
    unit = vocab.vectors / np.linalg.norm(vocab.vectors, axis=1, keepdims=True).clip(1e-12)
    sims = unit @ unit.T
    words = [set(t.split()) for t in vocab.tags]
    names = [set(tag_categories(t)) for t in vocab.tags]
    rows = []
    for i, t in enumerate(vocab.tags):
        c = tag_category(t)
        if c == unmapped or c is None:
            continue
        ok = np.array([j != i and (share_words or not words[i] & words[j]) for j in range(len(vocab.tags))])
        if not ok.any():
            continue
        cand = np.flatnonzero(ok)
        j = int(cand[np.argmax(sims[i, cand])])
        rows.append({"tag": t, "nearest": vocab.tags[j], "hit": c in names[j],
                     "chance": float(np.mean([c in names[k] for k in cand]))})
    return pd.DataFrame(rows, columns=["tag", "nearest", "hit", "chance"])


def normalise_tag(tag: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: one spelling per tag.

    Args:
        tag: a tag as written (by a person or an LLM).

    Returns:
        Its normal form (possibly empty).
    """
    return re.sub(r"\s+", " ", str(tag)).strip(" \t\n.,;:!?\"'-*").lower()


# --------------------------------------------------------------------------------------
# Training pairs: (user, history strictly before t, item liked at t)
# --------------------------------------------------------------------------------------


@dataclass
class Pairs:
    """Training pairs as arrays: ``user`` (user row), ``hist`` (n, L) item ID indices of the
    positives strictly before the target (0 = padding, newest last), ``target`` (n,) columns."""

    user: np.ndarray
    hist: np.ndarray
    target: np.ndarray
    user_ids: np.ndarray  # user row -> user id (row 0 is "unknown user")

    def __len__(self) -> int:
        return len(self.target)


def _user_sequences(ratings: pd.DataFrame, feats: ItemFeatures) -> dict[int, np.ndarray]:
    """Each user's positives as catalogue columns, oldest first (:class:`interactions.Sequences`)."""
    seqs = interactions.Sequences.from_ratings(ratings, "ratings", "Pass split.history(stage).")
    return seqs.per_user(feats.columns(seqs.item_id))


def _pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[s > 0][-length:]  # cold items (index 0) carry no ID: skipped
        if len(s):
            out[i, length - len(s) :] = s
    return out


def training_pairs(train: pd.DataFrame, feats: ItemFeatures, max_history: int) -> Pairs:
    """One pair per training positive that has at least one earlier positive.

    The history is what the user liked strictly before the target in time (never the target
    itself, never anything later, never a positive of the same second: the library's one tie
    rule, :func:`llmrec_lib.interactions.history_end`), so the user tower learns to predict the
    *next* item, as it is asked to at evaluation time. Only ``split.train`` goes in.

    Args:
        train: the training ratings (``split.train``).
        feats: the catalogue's features (column lookup and ID indices).
        max_history: the most history items kept per pair (the newest).

    Returns:
        The :class:`Pairs`.
    """
    seqs = interactions.Sequences.from_ratings(train, "training ratings", "Pass split.train.")
    cols = feats.columns(seqs.item_id)
    idx = feats.id_index[cols]
    ends = seqs.start.repeat(seqs.count) + seqs.history_ends()  # history rows: [start, end)
    user_ids = np.concatenate([[-1], seqs.users]).astype(np.int64)
    users, hists, targets = [], [], []
    for row, (s, c) in enumerate(zip(seqs.start, seqs.count)):
        for k in range(s, s + c):
            if ends[k] > s:  # a target needs an earlier positive
                users.append(row + 1)
                hists.append(idx[max(s, ends[k] - max_history) : ends[k]])
                targets.append(cols[k])
    if not targets:
        raise ValueError("no user has two training positives: nothing to learn a next item from")
    return Pairs(np.asarray(users, np.int64), _pad_left(hists, max_history), np.asarray(targets, np.int64), user_ids)


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class ThreeTowerNet(nn.Module):
    """Three towers, each ending in an L2-normalised ``dim`` vector (scores are cosines)."""

    def __init__(self, n_users: int, n_warm: int, n_genres: int, n_decades: int, n_pop: int,
                 d_text: int, cfg: TowerConfig) -> None:
        super().__init__()
        d = cfg.dim
        # item tower
        self.item_id = nn.Embedding(n_warm + 1, d, padding_idx=0)  # row 0: cold item, zero
        self.genre = nn.Linear(n_genres, d, bias=False)
        self.decade = nn.Embedding(n_decades, d)
        self.pop = nn.Embedding(n_pop, d)
        self.item_mlp = _mlp(4 * d, cfg.hidden, d, cfg.dropout)
        # user tower
        self.user_id = nn.Embedding(n_users, d)  # row 0: a user unseen in training
        self.hist_item = nn.Embedding(n_warm + 1, d, padding_idx=0)
        self.use_user_id = cfg.user_id
        self.user_mlp = _mlp(2 * d, cfg.hidden, d, cfg.dropout)
        # tag tower
        self.tag_mlp = _mlp(d_text, cfg.hidden, d, cfg.dropout)
        for emb in (self.item_id, self.decade, self.pop, self.user_id, self.hist_item):
            nn.init.normal_(emb.weight, std=0.05)
        with torch.no_grad():
            self.item_id.weight[0].zero_()
            self.hist_item.weight[0].zero_()
            self.user_id.weight[0].zero_()

    def items(self, id_index, genres, decade, pop) -> torch.Tensor:
        """The item tower: ID (zero for a cold item), genres, decade and popularity -> a unit
        vector.
        """
        x = torch.cat([self.item_id(id_index), self.genre(genres), self.decade(decade), self.pop(pop)], dim=-1)
        return F.normalize(self.item_mlp(x), dim=-1)

    def users(self, user, hist) -> torch.Tensor:
        """The user tower: the user's ID embedding (zeros with ``user_id=False``) and the mean
        of their history items' embeddings (padding left out) -> a unit vector.
        """
        mask = (hist > 0).float().unsqueeze(-1)  # (B, L, 1)
        pooled = (self.hist_item(hist) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # mean of real items
        uid = self.user_id(user) if self.use_user_id else torch.zeros_like(pooled)
        return F.normalize(self.user_mlp(torch.cat([uid, pooled], dim=-1)), dim=-1)

    def tags(self, tag_vectors) -> torch.Tensor:
        """The tag tower: a frozen tag vector -> a unit vector in the shared space."""
        return F.normalize(self.tag_mlp(tag_vectors), dim=-1)


def _softmax_loss(logits: torch.Tensor, positive: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-positive in-batch softmax: ``-log(sum_pos exp / sum_all exp)`` per row, averaged.

    ``positive`` (B, B) bool, at least the diagonal; ``ignore`` (B, B) bool columns that are
    neither positive nor negative for that row (false negatives: masked out).
    """
    if ignore is not None:
        logits = logits.masked_fill(ignore & ~positive, float("-inf"))
    pos = logits.masked_fill(~positive, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(pos, dim=1)).mean()


def tower_losses(h_u: torch.Tensor, h_t: torch.Tensor, h_v: torch.Tensor, target: torch.Tensor,
                 has_tag: torch.Tensor, tag_pos: torch.Tensor, cate_pos: torch.Tensor,
                 temperature: float, log_q: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The three losses of one batch of B (user, tag, item) rows.

    ``h_u``, ``h_t``, ``h_v`` (B, d) normalised; ``target`` (B,) item columns (a column that
    appears twice is not a negative for its twin); ``has_tag`` (B,) bool, rows without a tag
    are left out of the tag losses; ``tag_pos`` and ``cate_pos`` (B, B) bool, the positives of
    row i's tag among the batch's items for ``L_tag`` and ``L_cate`` (:func:`item_tag_masks`,
    :func:`history_tag_masks`; the row's own item is always added).

    * ``col``: user i vs item i, other items of the batch are negatives.
    * ``tag``: tag i vs the items ``tag_pos`` marks (multi-positive), the rest negatives.
    * ``cate``: tag i vs every item ``cate_pos`` marks (same category), the rest negatives.

    In both tag losses a twin of row i's own item that the mask does not mark is masked out
    (neither positive nor negative), as in ``col``.

    ``log_q`` (B,): log of how often each row's item is drawn as an in-batch candidate (its
    share of training targets). A popular item is a negative in many more batches than a rare
    one; subtracting ``log q`` from its column (the log-Q correction [yi2019sampling])
    keeps the model from learning to push popular items down.

    Args:
        h_u: (B, d) user vectors.
        h_t: (B, d) tag vectors.
        h_v: (B, d) item vectors.
        target: (B,) the rows' item columns.
        has_tag: (B,) bool, rows that have a tag.
        tag_pos: (B, B) bool, the positives of L_tag.
        cate_pos: (B, B) bool, the positives of L_cate.
        temperature: the softmax temperature.
        log_q: (B,) log sampling probability of each row's item, or None for no correction.

    Returns:
        {"col", "tag", "cate"}: the three scalar losses.
    """
    b = len(target)
    eye = torch.eye(b, dtype=torch.bool, device=h_u.device)
    same_item = target[:, None] == target[None, :]
    shift = 0.0 if log_q is None else log_q[None, :]
    col = _softmax_loss(h_u @ h_v.T / temperature - shift, eye, same_item)
    if has_tag.sum() < 1:
        zero = h_t.sum() * 0.0
        return {"col": col, "tag": zero, "cate": zero}
    sem = (h_t @ h_v.T / temperature - shift)[has_tag]  # (B', B)
    eye_t, twin = eye[has_tag], same_item[has_tag]
    tag = _softmax_loss(sem, tag_pos[has_tag] | eye_t, twin)
    cate = _softmax_loss(sem, cate_pos[has_tag] | eye_t, twin)
    return {"col": col, "tag": tag, "cate": cate}


def item_tag_masks(target: np.ndarray, tag_row: np.ndarray, item_tag_rows: Sequence[np.ndarray],
                   primary: np.ndarray, tag_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, B) positives when row i's tag is one of its item's own tags (``tag_source="item"``).

    ``tag_pos[i, j]``: batch item j *carries* tag i (every such item is a positive, not only
    row i's own: a generic tag like "90s drama" describes many items of a batch, and counting
    them as negatives would teach the tag tower that they do not fit it).
    ``cate_pos[i, j]``: item j's primary category (``primary``, a genre column per catalogue
    column; chapter 07's one category per item) is tag i's category (``tag_cat``).
    ``tag_row`` -1: no tag (an all-False row).

    Args:
        target: (B,) the rows' item columns.
        tag_row: (B,) each row's tag (a vocabulary row, -1 for none).
        item_tag_rows: per catalogue column, the vocabulary rows of its tags.
        primary: per catalogue column, the genre column of its category (-1: none).
        tag_cat: per vocabulary row, the genre column of the tag's category (-1: none).

    Returns:
        (tag_pos, cate_pos), two (B, B) bool arrays.
    """
    b = len(target)
    tag_pos = np.zeros((b, b), dtype=bool)
    wanted: dict[int, list[int]] = {}
    for i, t in enumerate(tag_row):
        if t >= 0:
            wanted.setdefault(int(t), []).append(i)
    for j, c in enumerate(target):
        for t in item_tag_rows[c]:
            for i in wanted.get(int(t), ()):
                tag_pos[i, j] = True
    cat = np.where(tag_row >= 0, tag_cat[np.maximum(tag_row, 0)], -1)
    prim = primary[target]
    cate_pos = (cat[:, None] == prim[None, :]) & (cat >= 0)[:, None]
    return tag_pos, cate_pos


def history_tag_masks(target: np.ndarray, set_cats: np.ndarray, primary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, B) positives when row i's "tag" is the user's tag set before t
    (``tag_source="history"``). ``tag_pos``: row i's own item only (the set describes the
    user, not one item); ``cate_pos[i, j]``: item j's primary category is one of the set's
    categories (``set_cats`` (B, n_genres) bool).

    Args:
        target: (B,) the rows' item columns.
        set_cats: (B, n_genres) bool, the categories of each row's tag set.
        primary: per catalogue column, the genre column of its category (-1: none).

    Returns:
        (tag_pos, cate_pos), two (B, B) bool arrays.
    """
    b = len(target)
    prim = primary[target]
    cate_pos = np.zeros((b, b), dtype=bool)
    ok = prim >= 0
    cate_pos[:, ok] = set_cats[:, prim[ok]]
    return np.zeros((b, b), dtype=bool), cate_pos


def primary_categories(feats: "ItemFeatures", item_category: Callable | None = None) -> np.ndarray:
    """Per catalogue column, the genre column of the item's one category: ``item_category``
    (genre names -> a genre name or None; chapter 07's :func:`recgpt.item_category`), or by
    default the item's rarest genre in the catalogue. -1: none.

    Args:
        feats: the catalogue's features.
        item_category: genre names -> the item's category (default: the rarest genre).

    Returns:
        An int array, one genre column per catalogue column (-1: none).
    """
    names = feats.genre_names
    if item_category is None:
        freq = feats.genres.sum(0)
        out = np.full(feats.n_items, -1, dtype=np.int64)
        for c in range(feats.n_items):
            g = np.flatnonzero(feats.genres[c])
            if len(g):
                out[c] = int(g[np.argmin(freq[g])])
        return out
    return np.asarray([feats.genre_index(item_category([names[j] for j in np.flatnonzero(feats.genres[c])]))
                       for c in range(feats.n_items)], dtype=np.int64)


# --------------------------------------------------------------------------------------
# The model: training, towers at inference, a system for evaluate()
# --------------------------------------------------------------------------------------


class ThreeTowerModel:
    """User, item and tag towers trained with ``L_col + a L_tag + (1 - a) L_cate``.

    ``item_tags`` maps item id -> list of tag phrases (the items' own tags); ``tag_category``
    maps a tag to its category (a genre name, or None); ``item_category`` maps an item's genre
    names to its one category (default: its rarest genre), the positives of ``L_cate``.
    ``history_tagger`` (for ``cfg.tag_source == "history"``) maps a user's positives before t
    (item ids, oldest first, at most ``cfg.max_history``) to their tags at t: the tag predictor
    whose tags the tag tower reads at inference, or a stand-in for it.
    """

    def __init__(self, feats: ItemFeatures, vocab: TagVocab, item_tags: Mapping[int, Sequence[str]] | pd.Series,
                 tag_category: Callable[[str], str | None], cfg: TowerConfig | None = None, name: str | None = None,
                 item_category: Callable[[Sequence[str]], str | None] | None = None,
                 history_tagger: Callable[[Sequence[int]], Sequence[str]] | None = None) -> None:
        if cfg is not None and cfg.tag_source == "history" and history_tagger is None:
            raise ValueError("tag_source='history' needs history_tagger: a function from a user's earlier "
                             "positives (item ids) to their tags, e.g. recgpt.recent_tags with the item tags")
        self.history_tagger = history_tagger
        self.feats = feats
        self.vocab = vocab
        self.cfg = cfg or TowerConfig()
        self.tag_category = tag_category
        tags = item_tags if isinstance(item_tags, pd.Series) else pd.Series(dict(item_tags), dtype=object)
        # per catalogue column: rows of its tags in the vocabulary
        self.item_tag_rows: list[np.ndarray] = []
        for iid in feats.item_ids:
            ts = tags.get(int(iid), None)
            ts = [] if ts is None or (isinstance(ts, float) and math.isnan(ts)) else list(ts)
            keys = [normalise_tag(t) for t in ts if normalise_tag(t) in vocab.index]
            self.item_tag_rows.append(np.asarray([vocab.index[k] for k in keys], dtype=np.int64))
        self.tag_cat = np.asarray([feats.genre_index(tag_category(t)) for t in vocab.tags], dtype=np.int64)
        self.primary = primary_categories(feats, item_category)
        self.name = name or f"three towers (a={self.cfg.alpha:g})"
        self.net: ThreeTowerNet | None = None
        self.pairs: Pairs | None = None
        self.train_log: list[dict] = []
        self.fit_seconds: float | None = None

    # ---- tensors of the catalogue ---------------------------------------------------

    def _item_inputs(self, cols: np.ndarray | None = None):
        f = self.feats
        sel = slice(None) if cols is None else cols
        return tuple(torch.from_numpy(np.array(a[sel])) for a in (f.id_index, f.genres, f.decade, f.pop))

    def _new_net(self, n_users: int) -> ThreeTowerNet:
        f = self.feats
        return ThreeTowerNet(n_users, f.n_warm, len(f.genre_names), len(f.decades), f.n_pop, self.vocab.dim, self.cfg)

    # ---- training -------------------------------------------------------------------

    def fit(self, train: pd.DataFrame, progress: bool = True, checkpoint: str | os.PathLike | None = None,
            stop_at: int | None = None) -> "ThreeTowerModel":
        """Train on ``split.train`` only. Seeded: the same config gives the same weights.

        ``checkpoint``: a folder; after every epoch the weights (safetensors), the optimizer
        and the epoch are written there, and a later call with the same folder resumes after
        the last finished epoch (batches are a function of (seed, epoch), so a resumed run
        sees exactly the batches an uninterrupted one would). ``stop_at``: stop after that many
        epochs (an interruption on purpose, to show and test resuming).
        """
        if not isinstance(train, pd.DataFrame):
            train = getattr(train, "train", None)
            if not isinstance(train, pd.DataFrame):
                raise TypeError("fit() needs the training ratings: split.train")
        with config.private_torch_rng(self.cfg.seed, self.cfg.num_threads):
            return self._fit(train, progress, checkpoint, stop_at)

    def _fit(self, train: pd.DataFrame, progress: bool, checkpoint, stop_at: int | None) -> "ThreeTowerModel":
        """The training run, in named steps: pairs and a fresh (or resumed) network, the
        tensors every batch reads, then one ``_train_epoch`` per epoch, logged and checkpointed."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        t0 = time.perf_counter()
        pairs = training_pairs(train, self.feats, cfg.max_history)
        self.pairs = pairs
        self.user_row = {int(u): i for i, u in enumerate(pairs.user_ids) if i > 0}
        net = self._new_net(len(pairs.user_ids))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start_epoch, self.train_log = 0, []
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if ckpt is not None and (ckpt / "state.json").is_file():
            start_epoch = self._load_checkpoint(ckpt, net, opt)
        inputs = self._training_inputs(pairs)
        steps = math.ceil(len(pairs) / cfg.batch_size)
        bar = tqdm(total=cfg.epochs * steps, initial=start_epoch * steps, desc=self.name,
                   disable=not progress, leave=False)
        out_of_time = False
        net.train()
        self.resumed_from = start_epoch
        last = cfg.epochs if stop_at is None else min(cfg.epochs, int(stop_at))
        for epoch in range(start_epoch, last):
            sums, done, out_of_time = self._train_epoch(net, opt, pairs, inputs, epoch, steps, bar, t0)
            self.train_log.append({"epoch": epoch, **{k: v / done for k, v in sums.items()},
                                   "steps": done, "seconds": time.perf_counter() - t0})
            if ckpt is not None and not out_of_time:
                self._save_checkpoint(ckpt, net, opt, epoch + 1)
            if out_of_time:
                break
        bar.close()
        self.stopped_early = out_of_time or last < cfg.epochs
        net.eval()
        self.net = net
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _training_inputs(self, pairs: Pairs) -> dict:
        """What every batch reads, built once per run: the catalogue's item inputs, the tag
        vectors, the history tag sets (``tag_source="history"``) and each item's log sampling
        probability (its share of the training targets, for the log-Q correction)."""
        ids_all, gen_all, dec_all, pop_all = self._item_inputs()
        inputs = {"items": (ids_all, gen_all, dec_all, pop_all), "tag_vec": torch.from_numpy(self.vocab.vectors)}
        if self.cfg.tag_source == "history":
            inputs["set_rows"], inputs["set_cats"] = self.history_sets(pairs)
        freq = np.bincount(pairs.target, minlength=self.feats.n_items).astype(np.float64)
        inputs["log_q"] = torch.tensor(np.log(np.maximum(freq, 1.0) / freq.sum()), dtype=torch.float32)
        return inputs

    def _train_epoch(self, net: ThreeTowerNet, opt, pairs: Pairs, inputs: dict, epoch: int, steps: int,
                     bar, t0: float) -> tuple[dict, int, bool]:
        """One pass over the pairs in an order drawn from (seed, epoch), so a resumed run sees
        the batches an uninterrupted one would. Returns the summed losses, the steps taken
        and whether ``cfg.max_seconds`` ran out."""
        cfg = self.cfg
        # Dropout draws from torch's RNG: reseed per epoch so a resumed run repeats it too.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        g = np.random.default_rng([cfg.seed, epoch])
        perm = g.permutation(len(pairs))
        tag_pick = None
        if cfg.tag_source == "item":  # one tag per pair and epoch, drawn from the target's own tags
            tag_pick = np.array([rows[g.integers(len(rows))] if len(rows) else -1
                                 for rows in (self.item_tag_rows[c] for c in pairs.target)], dtype=np.int64)
        sums = {"loss": 0.0, "col": 0.0, "tag": 0.0, "cate": 0.0}
        for s in range(steps):
            rows = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            if len(rows) < 2:
                continue
            loss, parts = self._batch_loss(net, pairs, inputs, rows, tag_pick)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += loss.item()
            for k in ("col", "tag", "cate"):
                sums[k] += parts[k].item()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                return sums, s + 1, True
        return sums, s + 1, False

    def _batch_loss(self, net: ThreeTowerNet, pairs: Pairs, inputs: dict, rows: np.ndarray,
                    tag_pick: np.ndarray | None) -> tuple[torch.Tensor, dict]:
        """The loss of one batch of pairs: the three towers' outputs (item, user, then tag:
        dropout draws in that order), the masks of which in-batch items count as positives
        for the tag and category losses, and ``col + a * tag + (1 - a) * cate``."""
        cfg = self.cfg
        ids_all, gen_all, dec_all, pop_all = inputs["items"]
        tag_vec = inputs["tag_vec"]
        tgt = torch.from_numpy(pairs.target[rows])
        h_v = net.items(ids_all[tgt], gen_all[tgt], dec_all[tgt], pop_all[tgt])
        h_u = net.users(torch.from_numpy(pairs.user[rows]), torch.from_numpy(pairs.hist[rows]))
        if cfg.tag_source == "item":
            trow = tag_pick[rows]
            h_t = net.tags(tag_vec[torch.from_numpy(trow).clamp(min=0)])
            has = torch.from_numpy(trow >= 0)
            masks = item_tag_masks(pairs.target[rows], trow, self.item_tag_rows, self.primary, self.tag_cat)
        else:
            srow = torch.from_numpy(inputs["set_rows"][rows])
            m = (srow >= 0).float().unsqueeze(-1)
            h_set = (net.tags(tag_vec[srow.clamp(min=0)]) * m).sum(1) / m.sum(1).clamp(min=1.0)
            h_t = F.normalize(h_set, dim=-1)  # the mean of the set, as at inference
            has = m.squeeze(-1).sum(1) > 0
            masks = history_tag_masks(pairs.target[rows], inputs["set_cats"][rows], self.primary)
        parts = tower_losses(h_u, h_t, h_v, tgt, has, *(torch.from_numpy(x) for x in masks),
                             cfg.temperature, inputs["log_q"][tgt] if cfg.logq else None)
        loss = parts["col"] + cfg.alpha * parts["tag"] + (1 - cfg.alpha) * parts["cate"]
        return loss, parts

    def history_sets(self, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
        """Per training pair, the vocabulary rows of ``history_tagger``'s tags for the positives
        before the target ((n, T), -1 padded) and the genre columns of their categories
        ((n, n_genres) bool). Memoised per (tagger, pairs): a sweep over a and seeds tags once."""
        key = (self.history_tagger, hashlib.sha256(pairs.hist.tobytes() + pairs.target.tobytes()).hexdigest())
        if key in _SET_CACHE:
            return _SET_CACHE[key]
        f = self.feats
        inv = np.zeros(f.n_warm + 1, dtype=np.int64)
        warm = f.id_index > 0
        inv[f.id_index[warm]] = f.item_ids[warm]
        tag_lists = []
        for h in pairs.hist:
            ids = inv[h[h > 0]].tolist()
            keys = [normalise_tag(t) for t in self.history_tagger(ids)]
            tag_lists.append([self.vocab.index[k] for k in dict.fromkeys(keys) if k in self.vocab.index])
        width = max(1, max(len(t) for t in tag_lists))
        rows = np.full((len(tag_lists), width), -1, dtype=np.int64)
        cats = np.zeros((len(tag_lists), len(f.genre_names)), dtype=bool)
        for i, t in enumerate(tag_lists):
            rows[i, : len(t)] = t
            c = self.tag_cat[t] if t else np.zeros(0, dtype=np.int64)
            cats[i, c[c >= 0]] = True
        _SET_CACHE.clear()  # keep one entry: the arrays are large
        _SET_CACHE[key] = (rows, cats)
        return rows, cats

    def _save_checkpoint(self, folder: Path, net: nn.Module, opt, epochs_done: int) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
        torch.save(opt.state_dict(), folder / "optimizer.pt")
        state = {"epochs_done": epochs_done, "config": asdict(self.cfg), "train_log": self.train_log}
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, folder / "state.json")  # the state names a finished epoch, or nothing

    def _load_checkpoint(self, folder: Path, net: nn.Module, opt) -> int:
        from safetensors.torch import load_file

        state = json.loads((folder / "state.json").read_text())
        if state["config"] != asdict(self.cfg):
            raise ValueError(f"the checkpoint in {folder} was written with another TowerConfig; "
                             "use a new folder or delete this one")
        net.load_state_dict(load_file(folder / "model.safetensors"))
        opt.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.train_log = list(state["train_log"])
        return int(state["epochs_done"])

    def _adopt(self, payload: dict) -> None:
        """Take the result of a fit run elsewhere (:func:`fit_all`'s workers): the weights and
        everything ``fit`` records."""
        net = self._new_net(len(payload["pairs"].user_ids))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in payload["state"].items()})
        net.eval()
        for attr, value in payload.items():
            if attr != "state":
                setattr(self, attr, value)
        self.net = net

    def _check_fitted(self) -> None:
        if self.net is None:
            raise RuntimeError("the model is not trained: call fit(split.train) first")

    # ---- towers at inference --------------------------------------------------------

    @torch.inference_mode()
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) ``h_v`` of the whole catalogue (cold items too: from features)."""
        self._check_fitted()
        return self.net.items(*self._item_inputs()).numpy()

    @torch.inference_mode()
    def user_vectors(self, user_ids, history: pd.DataFrame) -> np.ndarray:
        """(len(user_ids), dim) ``h_u`` from each user's ID and latest positives in ``history``
        (``split.history(stage)``). A user unseen in training gets the unknown-user row."""
        self._check_fitted()
        seqs = _user_sequences(history, self.feats)
        user_ids = np.asarray(user_ids, dtype=np.int64)
        empty = [int(u) for u in user_ids if len(seqs.get(int(u), [])) == 0]
        if empty:
            raise ValueError(f"users {empty[:5]} have no positive in the history: the user tower has "
                             "nothing to pool; evaluate split.users(stage)")
        hist = _pad_left([self.feats.id_index[seqs[int(u)]] for u in user_ids], self.cfg.max_history)
        rows = np.array([self.user_row.get(int(u), 0) for u in user_ids], dtype=np.int64)
        return self.net.users(torch.from_numpy(rows), torch.from_numpy(hist)).numpy()

    @torch.inference_mode()
    def tag_vectors(self, tags: Sequence[str]) -> np.ndarray:
        """(len(tags), dim) ``h_t`` of each tag (new tags are encoded with the frozen table)."""
        self._check_fitted()
        if len(tags) == 0:
            return np.zeros((0, self.cfg.dim), dtype=np.float32)
        return self.net.tags(torch.from_numpy(self.vocab.vectors_for(tags))).numpy()

    def user_tag_vectors(self, user_ids, user_tags: Mapping[int, Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(len(user_ids), dim) the normalised mean ``h_t`` of each user's tags, and a bool
        (len(user_ids),) saying who had any tag (others get the zero vector: the fused score
        of such a user is the user tower's alone)."""
        out = np.zeros((len(user_ids), self.cfg.dim), dtype=np.float32)
        has = np.zeros(len(user_ids), dtype=bool)
        for i, u in enumerate(np.asarray(user_ids, dtype=np.int64)):
            tags = list(user_tags.get(int(u), []) or [])
            if tags:
                v = self.tag_vectors(tags).mean(0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
                has[i] = True
        return out, has

    def system(self, split: data.Split, stage: str, user_tags: Mapping[int, Sequence[str]] | None,
               b: float = 1.0, name: str | None = None) -> "FusedSystem":
        """A scorer for :func:`evaluate.evaluate` on ``stage``: towers computed once for
        ``split.users(stage)``; :meth:`FusedSystem.with_b` re-weights without recomputing."""
        users = split.users(stage)
        hist = split.history(stage)
        h_u = self.user_vectors(users, hist)
        h_t, has = self.user_tag_vectors(users, user_tags or {})
        return FusedSystem(users, h_u, h_t, has, self.item_vectors(), b, name or self.name)


def fit_all(models: Mapping, train: pd.DataFrame, workers: int | None = None) -> dict:
    """Fit several :class:`ThreeTowerModel` at once, each in its own forked process.

    A tower model trains on one thread (``TowerConfig.num_threads``), so on a machine with
    two cores a second model can train beside it. Every model is fitted exactly as
    ``model.fit(train, progress=False)`` would: same seed, same batches, same single
    thread, so the weights are bit-identical to a sequential fit (a test checks it). Off
    Linux (``fork`` is unsafe on macOS and absent on Windows), or when one worker is asked
    for, the models are fitted one by one here.

    Args:
        models: key -> an unfitted model (each is fitted in place and returned).
        train: the training ratings (``split.train``).
        workers: processes at once (default: CPU cores / threads per model, at most the
            number of models).

    Returns:
        The same mapping, key -> fitted model.
    """
    import multiprocessing as mp

    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    models = dict(models)
    cores = config.usable_cpus()
    threads = max([int(m.cfg.num_threads or cores) for m in models.values()], default=1)
    workers = min(int(workers or max(1, cores // threads)), len(models))
    if workers <= 1 or not sys.platform.startswith("linux"):  # fork is unsafe on macOS
        return {k: m.fit(train, progress=False) for k, m in models.items()}
    from concurrent.futures import ProcessPoolExecutor

    keys = list(models)
    _FORK_JOBS["models"], _FORK_JOBS["train"] = [models[k] for k in keys], train
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            fitted = list(pool.map(_fit_in_child, range(len(keys))))
    finally:
        _FORK_JOBS.clear()
    for k, payload in zip(keys, fitted):
        models[k]._adopt(payload)
    return models


_FORK_JOBS: dict = {}  # fit_all's models, inherited by its forked workers


def _fit_in_child(i: int) -> dict:
    """A forked worker of :func:`fit_all`: fit model ``i`` and send back what fit() set."""
    m = _FORK_JOBS["models"][i].fit(_FORK_JOBS["train"], progress=False)
    state = {k: v.detach().numpy().copy() for k, v in m.net.state_dict().items()}
    keep = ("pairs", "user_row", "train_log", "resumed_from", "stopped_early", "fit_seconds")
    return {"state": state} | {a: getattr(m, a) for a in keep}


class FusedSystem:
    """``score = (b h_u + (1 - b) h_t) . h_v`` for a fixed set of users (what evaluate() calls).

    Every catalogue item is scoreable: a cold item's vector comes from its genres, decade and
    popularity bucket.
    """

    def __init__(self, user_ids, h_u, h_t, has_tags, h_v, b: float, name: str) -> None:
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"b must be in [0, 1] (1 = user tower alone, 0 = tag tower alone), got {b!r}")
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.h_u, self.h_t, self.has_tags, self.h_v = h_u, h_t, has_tags, h_v
        self.b = float(b)
        self.name = name
        self._row = {int(u): i for i, u in enumerate(self.user_ids)}
        self.can_score_items = np.ones(len(h_v), dtype=bool)

    def with_b(self, b: float, name: str | None = None) -> "FusedSystem":
        """The same prepared vectors fused with another ``b`` (no recomputation: a sweep over b is
        cheap).
        """
        return FusedSystem(self.user_ids, self.h_u, self.h_t, self.has_tags, self.h_v, b, name or self.name)

    def user_vectors(self, user_ids) -> np.ndarray:
        """``b h_u + (1 - b) h_t`` for ``user_ids``; a user :meth:`ThreeTowerModel.system` did not
        prepare raises KeyError.
        """
        missing = [int(u) for u in np.asarray(user_ids).ravel() if int(u) not in self._row]
        if missing:
            raise KeyError(f"users {missing[:5]} were not prepared by model.system(); it covers split.users(stage)")
        rows = [self._row[int(u)] for u in np.asarray(user_ids).ravel()]
        return self.b * self.h_u[rows] + (1.0 - self.b) * self.h_t[rows]

    def score(self, user_ids) -> np.ndarray:
        """Every catalogue item's score for each of ``user_ids``: (n_users, n_items) float32."""
        return (self.user_vectors(user_ids) @ self.h_v.T).astype(np.float32)


# --------------------------------------------------------------------------------------
# Tags for a user when no LLM prediction is at hand
# --------------------------------------------------------------------------------------


def recent_tags(history: pd.DataFrame, item_tags: Mapping[int, Sequence[str]] | pd.Series, users=None,
                n_items: int = 10, n_tags: int = 10) -> dict[int, list[str]]:
    """Tags of each user's ``n_items`` latest positives, most frequent first (ties: most
    recent first), at most ``n_tags``: the stand-in for LLM-predicted tags.

    It describes what the user liked *lately*, not what they will want *next*: the LLM's job
    in RecGPT is exactly that step from one to the other.

    Args:
        history: the ratings visible at query time (``split.history(stage)``).
        item_tags: item_id -> the item's tags.
        users: the users to describe (default: every user in ``history``).
        n_items: how many of the latest positives to read.
        n_tags: the most tags per user.

    Returns:
        user_id -> tags, most frequent first.
    """
    pos = history[history["rating"] >= data.POSITIVE_MIN].sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    if users is not None:
        pos = pos[pos["user_id"].isin(np.asarray(users))]
    out: dict[int, list[str]] = {}
    for u, g in pos.groupby("user_id", sort=True):
        items = g["item_id"].to_numpy()[::-1][:n_items]  # newest first
        score: dict[str, tuple[int, int]] = {}
        for rank, iid in enumerate(items):
            for t in item_tags.get(int(iid), []) or []:
                key = normalise_tag(t)
                if not key:
                    continue
                c, first = score.get(key, (0, rank))
                score[key] = (c + 1, min(first, rank))
        out[int(u)] = [t for t, _ in sorted(score.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))][:n_tags]
    return out


# --------------------------------------------------------------------------------------
# Settings per mode and the model built from the book's data
# --------------------------------------------------------------------------------------

#: Tower settings by mode. Three epochs reach the plateau of validation Recall@50 at this size
#: (six and ten were no better when measured); full mode sweeps more values of a and seeds.
MODES = {
    "quick": {"config": TowerConfig(epochs=3), "alphas": (0.0, 0.5, 1.0), "seeds": (0, 1, 2),
              "explain_users": 30, "explain_k": 4, "explain_users_live": 8},
    "full": {"config": TowerConfig(epochs=3), "alphas": (0.0, 0.25, 0.5, 0.75, 1.0), "seeds": (0, 1, 2),
             "explain_users": 30, "explain_k": 4, "explain_users_live": 30},
}
#: ``explain_users_live``: on data other than the reference release the committed table does not
#: fit (it explains the reference split's selected model), so chapter 08 writes a table live for
#: this many seeded test users (8 x 4 pairs: about 30 s of SmolLM2 on two cores in quick mode).
BETAS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def build(ml, split, item_tags: pd.Series, backbone, cfg: TowerConfig, tag_category, *,
          item_category=None, history_tagger=None) -> ThreeTowerModel:
    """Item features, the frozen tag vocabulary and an untrained model, from the book's data
    (``item_category`` and ``history_tagger`` as :class:`ThreeTowerModel` takes them).

    Args:
        ml: the loaded MovieLens (movies, item_ids).
        split: the split whose training ratings make the item features.
        item_tags: item_id -> the item's tags.
        backbone: the loaded backbone whose token table encodes the tags.
        cfg: the model's configuration.
        tag_category: tag -> its category.
        item_category: genre names -> an item's category (see :class:`ThreeTowerModel`).
        history_tagger: the tag predictor of ``tag_source="history"``.

    Returns:
        The untrained :class:`ThreeTowerModel`.
    """
    feats = ItemFeatures.build(ml.movies, split.train, ml.item_ids)
    vocab = TagVocab.from_backbone([t for ts in item_tags for t in ts], backbone)
    return ThreeTowerModel(feats, vocab, item_tags, tag_category, cfg, item_category=item_category,
                           history_tagger=history_tagger)
