"""Named training recipes for the dual-encoder chapters, and the command that reproduces them.

A recipe is an :class:`~llmrec_lib.encoders.EncoderConfig` plus a
:class:`~llmrec_lib.train.TrainConfig`. The chapters run each recipe twice over:

* **quick** (CI, a first read): a short live run that shows the mechanics (loss falling, a
  checkpoint written and resumed) in a minute or two;
* **full**: the run whose adapter is committed under ``artifacts/adapters/<recipe>/`` and
  loaded by the quick mode, regenerated with::

      python -m llmrec_lib.recipes train <recipe> --mode full
      torchrun --nproc_per_node 2 -m llmrec_lib.recipes train <recipe> --mode full   # 2 processes

A committed adapter's serving point (chapter 03's whole-history weight and popularity prior,
chosen on validation) is stored beside it by ``python -m llmrec_lib.recipes tune-point
<recipe>``, with the test lists of the recipe and its seeds at that point. Lists that rank
fusion reads (chapter 03's seeds of the two-source lists) are stored deeper:
``python -m llmrec_lib.recipes evaluate <recipe> --whole-history W BETA --depth 1000``.

Everything a recipe needs (split, pairs, prompts, evaluation) is built here once, so a chapter
and the command line train exactly the same thing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec_lib import config, data, distributed, text
from llmrec_lib.encoders import EncoderConfig
from llmrec_lib.train import TrainConfig

ARTIFACTS = config.artifacts_dir("adapters")
ITEM_FIELDS = ("title", "genres", "pop")  # the item prompt; no tags: most postdate their author's training (text.training_tags)
HISTORY_FIELDS = EncoderConfig.history_fields  # the shorter item text inside a user prompt

_BASE_ENC = EncoderConfig(backbone="smollm2-135m", n_layers=8, pooling="mean", lora_r=8, lora_alpha=16,
                          user_max_tokens=128, item_max_tokens=40)
_BASE_TRAIN = TrainConfig(batch_size=16, lr=3e-4, warmup_steps=30, temperature=0.05, user_budget=128,
                          history_items=20, checkpoint_every=50)

RECIPES: dict[str, tuple[EncoderConfig, TrainConfig]] = {
    "infonce": (_BASE_ENC, _BASE_TRAIN),
    # chapter 05: every nested prefix of the 576-d vector trained at once, down to 1/16
    "matryoshka": (_BASE_ENC, replace(_BASE_TRAIN, matryoshka_dims=(576, 288, 144, 72, 36))),
    # chapter 04: the paper's ablations, one change each against "ablate-base". Shorter runs
    # (ABLATION_STEPS) so that all six fit in about an hour and a half of 2 CPU cores.
    "ablate-base": (_BASE_ENC, _BASE_TRAIN),
    "ablate-hard1": (_BASE_ENC, replace(_BASE_TRAIN, hard_negatives=1)),
    "ablate-hard2": (_BASE_ENC, replace(_BASE_TRAIN, hard_negatives=2)),
    "ablate-bce": (_BASE_ENC, replace(_BASE_TRAIN, loss="bce")),
    "ablate-full-history": (_BASE_ENC, replace(_BASE_TRAIN, positive_only=False)),
    "ablate-last-token": (replace(_BASE_ENC, pooling="last"), _BASE_TRAIN),
}
ABLATIONS = [n for n in RECIPES if n.startswith("ablate-")]

# The popularity-aware recipe (chapter 03, second edition): every-position pairs from one
# member forward of up to 256 history tokens, members drawn uniformly, several epochs of
# pairs; negatives are the batch's positives plus 32 catalogue items drawn uniformly, all
# encoded live, with the mixed log-Q correction.
_SEQ_ENC = replace(_BASE_ENC, user_max_tokens=256)
_SEQ_TRAIN = replace(_BASE_TRAIN, batch_size=8, positions=8, user_budget=256, objective="in_batch",
                     log_q=True, uniform_negatives=32, warmup_steps=50, checkpoint_every=25,
                     patience=2)
RECIPES["mixed"] = (_SEQ_ENC, _SEQ_TRAIN)

# Chapter 04 on that base: its ablations again, one switch each against "mixed" and at its
# length (early stopping on validation included), plus the two prompt questions of chapter 01
# (titles-only history items; popularity as a raw count, not a bucket token). BCE gets its own
# temperature and bias, chosen on validation from a 2 x 2 grid (chapter 04 states the rule).
MIXED_ABLATIONS = {
    "mixed-hard1": (_SEQ_ENC, replace(_SEQ_TRAIN, hard_negatives=1)),
    "mixed-hard2": (_SEQ_ENC, replace(_SEQ_TRAIN, hard_negatives=2)),
    "mixed-full-history": (_SEQ_ENC, replace(_SEQ_TRAIN, positive_only=False)),
    "mixed-last-token": (replace(_SEQ_ENC, pooling="last"), _SEQ_TRAIN),
    "mixed-titles": (replace(_SEQ_ENC, history_fields=("title",)), _SEQ_TRAIN),
    "mixed-pop-count": (replace(_SEQ_ENC, pop_format="count"), _SEQ_TRAIN),
}
BCE_GRID = {f"mixed-bce-t{round(t * 100):02d}-b{round(b * 100):02d}": (t, b)
            for t in (0.05, 0.1) for b in (0.25, 0.5)}
for _name, (_t, _b) in BCE_GRID.items():
    MIXED_ABLATIONS[_name] = (_SEQ_ENC, replace(_SEQ_TRAIN, loss="bce", temperature=_t, bce_bias=_b))
RECIPES.update(MIXED_ABLATIONS)

# Chapter 09's trained LinkedIn arms again under two more seeds each (the seed fixes LoRA's
# start, the batch order and every draw), so that every trained arm reports a seed spread. A
# seed variant is its base recipe in everything but the seed, its length included; recipe ->
# (base, seed index). The infonce seeds trained on 2 cores (about 33 min each); the others
# cost what their first seed did (75 min for "mixed"), so they were trained on a GPU
# (tools/train_recipes.py; each adapter's record says where).
SEED_OF: dict[str, tuple[str, int]] = {}
for _base in ("infonce", "matryoshka", "ablate-hard2", "mixed", "mixed-pop-count"):
    SEED_OF[_base] = (_base, 0)
    for _k in (1, 2):
        _enc, _tr = RECIPES[_base]
        RECIPES[f"{_base}-seed{_k}"] = (_enc, replace(_tr, seed=config.DEFAULT_SEED + _k))
        SEED_OF[f"{_base}-seed{_k}"] = (_base, _k)


def seeds_of(name: str) -> list[str]:
    """The recipes that train ``name`` under other seeds, seed 1 first (empty: none).

    Args:
        name: a key of :data:`RECIPES`.

    Returns:
        The other seeds' recipe names (``name`` itself excluded).
    """
    base = SEED_OF.get(name, (name, 0))[0]
    return sorted(n for n, (b, k) in SEED_OF.items() if b == base and n != name)

# Chapter 10's quality-against-scale curves: chapter 04's base recipe run to completion at
# other lengths (its learning-rate schedule ends at each run's last step), and at other depths
# at chapter 04's length. With "ablate-base" (400 steps, 8 layers) and "infonce" (1,600 steps),
# each axis has four or more complete runs, all tested on the same users. 16 layers cost about
# 2x a step of 8 (trained on a bf16 CPU); 30 layers (about 4x), 800 steps, 512 tokens and 4 or
# 8 hard negatives were trained on a GPU (tools/train_recipes.py; each record names its machine).
SCALE_STEPS = {"scale-steps100": 100, "scale-steps200": 200, "scale-steps800": 800}
SCALE_LAYERS = {"scale-layers1": 1, "scale-layers2": 2, "scale-layers4": 4, "scale-layers16": 16,
                "scale-layers30": 30}
for _name in SCALE_STEPS:
    RECIPES[_name] = (_BASE_ENC, _BASE_TRAIN)
for _name, _n in SCALE_LAYERS.items():
    RECIPES[_name] = (replace(_BASE_ENC, n_layers=_n), _BASE_TRAIN)
# ... and at other history budgets, at chapter 04's length and depth: the member prompt's
# tokens, in training and serving. The window of recent ratings a training prompt is written
# from grows with the budget (the base reads its last 20 ratings into 128 tokens), so that the
# budget, not the window, is what binds. With "ablate-base" (128 tokens), four points.
# (Not 32: the newest like alone does not fit 32 tokens for 8 of the 602 test users.)
SCALE_TOKENS = {"scale-tokens64": 64, "scale-tokens96": 96, "scale-tokens256": 256, "scale-tokens512": 512}
# ... and with more mined hard negatives per pair than chapter 04's one and two: with
# "ablate-base" (none), "ablate-hard1" and "ablate-hard2", the negatives axis has four points.
SCALE_NEGATIVES = {"scale-hard4": 4, "scale-hard8": 8}
for _name, _n in SCALE_NEGATIVES.items():
    RECIPES[_name] = (_BASE_ENC, replace(_BASE_TRAIN, hard_negatives=_n))
for _name, _n in SCALE_TOKENS.items():
    RECIPES[_name] = (replace(_BASE_ENC, user_max_tokens=_n),
                      replace(_BASE_TRAIN, user_budget=_n,
                              history_items=_BASE_TRAIN.history_items * _n // 128))



@dataclass(frozen=True)
class RunLength(config.ModeSettings):
    """Optimiser steps of a recipe's run, per mode (:class:`llmrec_lib.config.ModeSettings`).

    Quick mode is a short live run that shows the mechanics; full mode is the run whose
    adapter is committed. :func:`recipe` picks the one that fits a recipe (:meth:`steps_for`).

    Attributes:
        mode: "quick" or "full".
        steps: the one-pair-per-user recipes (infonce, matryoshka).
        ablation_steps: chapter 04's ``ablate-*`` recipes; shorter full runs, so that all six
            fit in about an hour and a half of 2 CPU cores (quick mode: as ``steps``); also
            the length of chapter 10's depth and history-budget runs (:data:`SCALE_LAYERS`,
            :data:`SCALE_TOKENS`). Chapter 10's length
            runs (:data:`SCALE_STEPS`) carry their own full-mode length.
        sequence_steps: the every-position recipes (``mixed``): steps of 8 users, about 50
            pairs each, so fewer steps do more.
    """

    steps: int
    ablation_steps: int
    sequence_steps: int

    MODES = {
        "quick": dict(steps=12, ablation_steps=12, sequence_steps=12),
        "full": dict(steps=1600, ablation_steps=400, sequence_steps=800),
    }

    def steps_for(self, name: str) -> int:
        """The steps of recipe ``name`` in this mode."""
        name = SEED_OF.get(name, (name, 0))[0]  # a seed variant runs as long as its base
        if RECIPES[name][1].positions:
            return self.sequence_steps
        if name in SCALE_STEPS:  # its own full length; quick mode shows the mechanics
            return SCALE_STEPS[name] if self.mode == "full" else self.steps
        at_ablation_length = name in ABLATIONS or name in SCALE_LAYERS or name in SCALE_TOKENS \
            or name in SCALE_NEGATIVES
        return self.ablation_steps if at_ablation_length else self.steps


@dataclass
class Setting:
    """Everything a run needs, built once from the data.

    ``item_text`` and ``history_text`` are the book's prompts (:data:`ITEM_FIELDS`,
    :data:`HISTORY_FIELDS`, popularity as a bucket token); :meth:`texts_for` writes them the way
    another encoder config asks (chapter 04's titles-only and raw-count ablations).
    """

    ml: data.MovieLens
    split: data.Split
    item_text: pd.Series
    history_text: pd.Series
    _other: dict = field(default_factory=dict, repr=False)

    def texts_for(self, enc: EncoderConfig) -> tuple[pd.Series, pd.Series]:
        """(item prompts, history texts) written as ``enc`` reads them: its
        ``pop_format`` and ``history_fields``. The book's own are returned as they are.

        Args:
            enc: the encoder's config.

        Returns:
            The two texts, indexed by item id.
        """
        item, history = self.item_text, self.history_text
        if enc.pop_format != EncoderConfig.pop_format:
            key = ("item", enc.pop_format)
            if key not in self._other:
                pop = text.popularity_counts(self.split.train, self.ml.item_ids)
                self._other[key] = text.item_texts(self.ml.movies, fields=ITEM_FIELDS,
                                                   popularity=pop, pop_format=enc.pop_format)
            item = self._other[key]
        if tuple(enc.history_fields) != HISTORY_FIELDS:
            key = ("history", tuple(enc.history_fields))
            if key not in self._other:
                self._other[key] = text.item_texts(self.ml.movies, fields=enc.history_fields)
            history = self._other[key]
        return item, history


def build_setting(data_dir=None, verify: bool | None = None) -> Setting:
    """Split, item prompts and history texts of a MovieLens folder, built once per run.

    Args:
        data_dir: the MovieLens folder (None: ``LLMREC_DATA_DIR``, see :func:`config.data_dir`).
        verify: :func:`llmrec_lib.data.load_movielens`'s (None: ``LLMREC_DATA_VERIFY``).

    Returns:
        The :class:`Setting`.
    """
    ml = data.load_movielens(data_dir, verify=verify)
    split = data.per_user_split(ml.ratings)
    pop = text.popularity_counts(split.train, ml.item_ids)
    item_text = text.item_texts(ml.movies, fields=ITEM_FIELDS, popularity=pop)
    history_text = text.item_texts(ml.movies, fields=HISTORY_FIELDS)
    return Setting(ml, split, item_text, history_text)


def recipe(name: str, mode: str) -> tuple[EncoderConfig, TrainConfig]:
    """A recipe's configs, its steps set for the mode (:class:`RunLength`).

    Args:
        name: a key of :data:`RECIPES` (KeyError, listing them, otherwise).
        mode: "quick" or "full"; None reads ``LLMREC_MODE``.

    Returns:
        (EncoderConfig, TrainConfig).
    """
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    enc, tr = RECIPES[name]
    return enc, replace(tr, steps=RunLength.for_mode(mode).steps_for(name))


def dual_encoder_system(model, setting: Setting, stage: str, *, cache: bool = True, progress: bool = True,
                        name: str = "dual encoder", positive_only: bool = True):
    """The fine-tuned (or zero-shot) dual encoder as an evaluable system for ``stage``.

    Items are encoded from their item prompts, users from their marker prompts, both pooled
    the way the model was trained (``model.cfg.pooling``).

    Args:
        model: a :class:`llmrec_lib.encoders.DualEncoder`.
        setting: the data (:class:`Setting`).
        stage: "valid" or "test": whose histories the user prompts are written from.
        cache: keep the item and user embeddings in the cache folder.
        progress: show progress bars.
        name: the system's name in results.
        positive_only: False writes user prompts from every rating with its score, as the
            "full history" recipe was trained.

    Returns:
        A system with ``score(user_ids)`` for :func:`llmrec_lib.evaluate.evaluate`.
    """
    from llmrec_lib import encoders

    backbone = model.backbone
    item_text, history_text = setting.texts_for(model.cfg)
    items = encoders.item_text_embeddings(backbone, item_text, setting.ml.item_ids,
                                          max_length=model.cfg.item_max_tokens, cache=cache,
                                          progress=progress, pooling=model.cfg.pooling)
    encode_users = encoders.prompt_user_encoder(backbone, history_text,
                                                budget=model.cfg.user_max_tokens, markers=True,
                                                cache=cache, progress=progress, pooling=model.cfg.pooling,
                                                positive_only=positive_only)
    return encoders.PromptRetrieval(setting.ml.item_ids, items, encode_users, name=name).fit().for_stage(
        setting.split, stage)


def world_setting(world) -> Setting:
    """A :class:`Setting` over a synthetic world: per-user split, items and history written as
    title + genres.

    Args:
        world: a :func:`llmrec_lib.synthetic.make_world` world.

    Returns:
        The :class:`Setting`.
    """
    split = data.per_user_split(world.ml.ratings)
    item_text = text.item_texts(world.ml.movies, fields=("title", "genres"))
    return Setting(world.ml, split, item_text, item_text)


def train_and_evaluate(setting: Setting, enc: EncoderConfig, tr: TrainConfig, *, stage: str = "test",
                       ks=(10, 50), progress: bool = False):
    """Train a fresh dual encoder with ``(enc, tr)`` on ``setting`` (no checkpoints), then
    evaluate it on ``stage``. For small experiments such as chapter 04's synthetic check; the
    committed models go through :func:`train_recipe`.

    Args:
        setting: the data.
        enc: the encoder's config.
        tr: the training config.
        stage: "valid" or "test".
        ks: the list lengths measured.
        progress: show progress bars.

    Returns:
        (the Trainer, the EvalResult).
    """
    from llmrec_lib import evaluate, train
    from llmrec_lib.encoders import DualEncoder

    config.seed_everything(tr.seed)
    model = DualEncoder(enc)
    pairs = train.training_pairs(setting.split.train, positive_only=tr.positive_only)
    trainer = train.Trainer(model, pairs, *setting.texts_for(enc), replace(tr, checkpoint_every=0),
                            catalogue=setting.ml.item_ids, progress=progress)
    trainer.fit()
    system = dual_encoder_system(model, setting, stage, cache=False, progress=False, positive_only=tr.positive_only)
    result = evaluate.evaluate(system, evaluate.EvalData.from_split(setting.split, stage, setting.ml.item_ids), ks=ks)
    return trainer, result


def load_published(name: str, device: str | None = None):
    """The committed full-mode model of recipe ``name`` and the TrainConfig it was trained with.

    Args:
        name: a key of :data:`RECIPES`.
        device: where to load it (None: the best device present).

    Returns:
        (DualEncoder with the adapter loaded, TrainConfig).
    """
    from llmrec_lib.encoders import DualEncoder

    path = ARTIFACTS / name
    if not (path / "encoder.json").is_file():
        raise FileNotFoundError(f"no committed adapter at {path}; run: "
                                f"python -m llmrec_lib.recipes train {name} --mode full")
    _, tr = recipe(name, "full")
    return DualEncoder.from_adapter(path, device=device), tr


def train_record(name: str) -> dict:
    """How the committed adapter of ``name`` was trained: its ``encoder.json``'s meta (command,
    steps, validation evaluations, seconds, machine).

    Args:
        name: a key of :data:`RECIPES` with a committed adapter.

    Returns:
        The record, as :func:`publish` wrote it.
    """
    return json.loads((ARTIFACTS / name / "encoder.json").read_text())["meta"]


def ranking_path(name: str, stage: str = "test", point: tuple[float, float] | None = None) -> Path:
    """Where ``evaluate`` stores the committed adapter's top-100 lists for ``stage``.

    Args:
        name: a key of :data:`RECIPES`.
        stage: "valid" or "test".
        point: a serving point ``(weight, beta)``: the lists of the model with
            :class:`llmrec_lib.serving.WholeHistory` and a popularity prior (None: the model alone).

    Returns:
        The ``.npz`` path (it may not exist).
    """
    if point is None:
        return ARTIFACTS / name / f"ranking_{stage}.npz"
    return ARTIFACTS / name / f"ranking_{stage}_whole_history_w{point[0]:g}_b{point[1]:g}.npz"


def stored_points(names, stage: str = "test") -> list[tuple[float, float]]:
    """The serving points at which every one of ``names`` has stored lists for ``stage``.

    Quick mode reads a committed adapter's lists at a point instead of encoding its catalogue
    again; this says which points it can read for all of them (the file names of
    :func:`ranking_path`).

    Args:
        names: keys of :data:`RECIPES` (one name, or several, e.g. a recipe's seeds).
        stage: "valid" or "test".

    Returns:
        The shared points ``(weight, beta)``, sorted; empty when there is none.
    """
    import re

    names = [names] if isinstance(names, str) else list(names)
    pattern = re.compile(rf"ranking_{stage}_whole_history_w([0-9.e+-]+)_b([0-9.e+-]+)\.npz")
    shared = None
    for name in names:
        found = {(float(m[1]), float(m[2]))
                 for m in map(pattern.fullmatch, (p.name for p in (ARTIFACTS / name).glob("*.npz")))
                 if m}
        shared = found if shared is None else shared & found
    return sorted(shared or ())


def seed_point(names, chosen: tuple[float, float], mode: str, stage: str = "test") -> tuple[float, float]:
    """The serving point at which a recipe's seeds are read: ``chosen`` unless quick mode has
    no stored lists there.

    Full mode recomputes the lists at ``chosen``. Quick mode never encodes a seed's catalogue:
    where this machine's validation chose another point than the committed lists were stored
    at (a near-tie that float32 and bf16 rounding can flip), it reads the one stored point, and
    the caller serves seed 0 there too, so the spread stays training noise.

    Args:
        names: the seed recipes (:func:`seeds_of`).
        chosen: the point validation chose for seed 0, ``(weight, beta)``.
        mode: "quick" or "full".
        stage: "valid" or "test".

    Returns:
        The point to serve every seed at.
    """
    chosen = (float(chosen[0]), float(chosen[1]))
    stored = stored_points(names, stage)
    if mode == "full" or chosen in stored:
        return chosen
    if len(stored) != 1:
        raise FileNotFoundError(
            f"quick mode reads the seeds' stored lists, but {list(names)} share {stored or 'none'}"
            f" for {stage}; store them at {chosen}: python -m llmrec_lib.recipes evaluate NAME"
            f" --stage {stage}{_point_args(chosen)}")
    return stored[0]


def _point_args(point: tuple[float, float] | None) -> str:
    return "" if point is None else f" --whole-history {point[0]:g} {point[1]:g}"


# Rank fusion reads every rank of a source (chapter 03), so the seed lists it merges in quick
# mode are stored this deep (``evaluate --depth``); chapter 03 measures, on seed 0, that this
# depth leaves the fused lists' Recall@50 unchanged.
FUSION_LIST_DEPTH = 1000


def evaluate_published(name: str, setting: Setting | None = None, stage: str = "test", *,
                       ks=(10, 50, 100), users=None, save: bool = False, cache: bool = True,
                       progress: bool = True, point: tuple[float, float] | None = None,
                       depth: int | None = None):
    """Evaluate the committed adapter of ``name`` on ``stage`` (full catalogue).

    With ``point = (weight, beta)`` the system is chapter 03's serving-time arm: the prompt
    blended with the mean of every liked item (:class:`llmrec_lib.serving.WholeHistory`), plus
    ``beta * log(1 + training count)`` (:class:`llmrec_lib.serving.PopularityPrior`).

    Args:
        name: a key of :data:`RECIPES`.
        setting: the data (None: :func:`build_setting`).
        stage: "valid" or "test".
        ks: the list lengths measured.
        users: evaluate only these users (None: all of the stage's).
        save: write its top-100 lists to :func:`ranking_path`.
        cache: keep the embeddings in the cache folder.
        progress: show progress bars.
        point: the serving point ``(weight, beta)``, or None for the model alone.
        depth: measure and store lists this long (None: the longest of ``ks``), e.g.
            :data:`FUSION_LIST_DEPTH` for lists that rank fusion reads.

    Returns:
        The :class:`llmrec_lib.evaluate.EvalResult`.
    """
    from llmrec_lib import evaluate, serving

    ks = tuple(ks) if depth is None or depth <= max(ks) else (*ks, int(depth))
    setting = setting or build_setting()
    model, tr = load_published(name)
    data_ = evaluate.EvalData.from_split(setting.split, stage, setting.ml.item_ids)
    if users is not None:
        data_ = data_.subset(users)
    system = dual_encoder_system(model, setting, stage, name=name, positive_only=tr.positive_only,
                                 cache=cache, progress=progress)
    meta = {"recipe": name, "adapter_sha": adapter_sha(name)}
    if point is not None:
        counts = text.popularity_counts(setting.split.train, setting.ml.item_ids).to_numpy()
        system = serving.at_point(system, counts, point, name=name)
        meta.update(weight=float(point[0]), beta=float(point[1]))
    result = evaluate.evaluate(system, data_, ks=ks)
    if save:
        if users is not None:
            raise ValueError("save=True stores the whole stage: leave users=None")
        evaluate.save_ranking(result, setting.ml.item_ids, ranking_path(name, stage, point), meta=meta)
    return result


def stored_source(name: str, setting: Setting, stage: str = "test",
                  point: tuple[float, float] | None = None, depth: int = FUSION_LIST_DEPTH):
    """The committed adapter's stored lists as a source to merge (quick mode: no encoding).

    Args:
        name: a key of :data:`RECIPES`.
        setting: the data the lists were made on.
        stage: "valid" or "test".
        point: the serving point ``(weight, beta)``, or None (:func:`ranking_path`).
        depth: the ranks the caller reads; shorter stored lists are an error that names the
            command storing them this deep.

    Returns:
        A :class:`llmrec_lib.serving.StoredSource`.
    """
    from llmrec_lib import evaluate, serving

    ranking = evaluate.StoredRanking(verified_ranking_path(name, stage, point), setting.ml.item_ids)
    if ranking.depth < depth:
        raise ValueError(f"{name}'s stored {stage} lists hold {ranking.depth} ranks, not {depth}; run: "
                         f"python -m llmrec_lib.recipes evaluate {name} --stage {stage}"
                         f"{_point_args(point)} --depth {depth}")
    return serving.StoredSource(ranking, len(setting.ml.item_ids), name=name)


def verified_ranking_path(name: str, stage: str = "test", point: tuple[float, float] | None = None) -> Path:
    """:func:`ranking_path`, after checking that the stored lists were made by the adapter
    committed now (a retrained adapter makes them stale: a clear error, never old numbers).

    Args:
        name: a key of :data:`RECIPES`.
        stage: "valid" or "test".
        point: the serving point ``(weight, beta)``, or None (:func:`ranking_path`).

    Returns:
        The ``.npz`` path.
    """
    path = ranking_path(name, stage, point)
    command = f"python -m llmrec_lib.recipes evaluate {name} --stage {stage}{_point_args(point)}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run: {command}")
    with np.load(path) as z:
        made_by = json.loads(str(z["meta"])).get("adapter_sha") if "meta" in z.files else None
    if made_by != adapter_sha(name):
        raise ValueError(f"{path} was made with another adapter; rerun: {command}")
    return path


# Chapter 03's serving grid, in order of preference (serving.tune_history): less of the
# whole-history mean first, then the smaller popularity prior.
SERVING_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SERVING_BETAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)


def point_path(name: str) -> Path:
    """Where :func:`tune_point` stores a committed adapter's validation-chosen serving point.

    Args:
        name: a key of :data:`RECIPES`.

    Returns:
        ``artifacts/adapters/<name>/serving_point.json`` (it may not exist).
    """
    return ARTIFACTS / name / "serving_point.json"


def tune_point(name: str, setting: Setting | None = None, *, progress: bool = True) -> dict:
    """Chapter 03's serving point for the committed adapter of ``name``: the whole-history
    weight and popularity prior chosen together on every validation user
    (:func:`llmrec_lib.serving.tune_history` over :data:`SERVING_WEIGHTS` x
    :data:`SERVING_BETAS`, its tie rule), stored in :func:`point_path` with the grid.

    Args:
        name: a key of :data:`RECIPES` with a committed adapter.
        setting: the data (None: :func:`build_setting`).
        progress: show progress bars.

    Returns:
        The stored record: recipe, adapter_sha, point [weight, beta], grid, command.
    """
    from llmrec_lib import evaluate, serving

    setting = setting or build_setting()
    model, tr = load_published(name)
    valid = evaluate.EvalData.from_split(setting.split, "valid", setting.ml.item_ids)
    system = dual_encoder_system(model, setting, "valid", name=name, progress=progress,
                                 positive_only=tr.positive_only)
    counts = text.popularity_counts(setting.split.train, setting.ml.item_ids).to_numpy()
    point, grid = serving.tune_history(system, valid, counts, SERVING_WEIGHTS, SERVING_BETAS)
    out = {"recipe": name, "adapter_sha": adapter_sha(name), "point": [float(p) for p in point],
           "grid": grid.to_dict(orient="list"),
           "command": f"python -m llmrec_lib.recipes tune-point {name}"}
    point_path(name).write_text(json.dumps(out, indent=1) + "\n")
    return out


def stored_point(name: str) -> tuple[float, float]:
    """The serving point :func:`tune_point` chose for the committed adapter of ``name`` (a
    retrained adapter makes it stale: a clear error, never an old point).

    Args:
        name: a key of :data:`RECIPES`.

    Returns:
        (weight, beta).
    """
    path, command = point_path(name), f"python -m llmrec_lib.recipes tune-point {name}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run: {command}")
    rec = json.loads(path.read_text())
    if rec["adapter_sha"] != adapter_sha(name):
        raise ValueError(f"{path} was chosen for another adapter; rerun: {command}")
    return tuple(rec["point"])


def stored_result(name: str, setting: Setting, stage: str = "test", ks=(10, 50, 100),
                  point: tuple[float, float] | None = None):
    """The committed adapter's metrics re-measured from its stored top-100 lists (seconds).

    Args:
        name: a key of :data:`RECIPES`.
        setting: the data the lists were made on.
        stage: "valid" or "test".
        ks: the list lengths measured (at most 100).
        point: the serving point ``(weight, beta)``, or None (:func:`ranking_path`).

    Returns:
        The :class:`llmrec_lib.evaluate.EvalResult`.
    """
    from llmrec_lib import abtest, evaluate

    path = verified_ranking_path(name, stage, point)
    data_ = evaluate.EvalData.from_split(setting.split, stage, setting.ml.item_ids)
    return abtest.load_rankings({name: path}, data_, ks=ks)[name]


def adapter_sha(name: str) -> str:
    """SHA-256 prefix of the committed adapter of ``name``: what its stored rankings are tied to.

    Args:
        name: a key of :data:`RECIPES`.

    Returns:
        16 hex digits.
    """
    return _sha(ARTIFACTS / name / "adapter.safetensors")


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def validation_fn(setting: Setting, n_users: int = 150, k: int = 50, seed: int = 0,
                  positive_only: bool = True):
    """The validation measure a training run reports: recall on a fixed sample of validation
    users, full catalogue.

    Args:
        setting: the data.
        n_users: validation users sampled.
        k: the list length.
        seed: the sample's seed.
        positive_only: False writes the prompts from every rating with its score, as the
            "full history" recipes train (:func:`dual_encoder_system`).

    Returns:
        A function ``model -> {"recall@50": ...}`` (the key names ``k``).
    """
    from llmrec_lib import evaluate

    users = setting.split.users("valid")
    users = np.sort(np.random.default_rng(seed).choice(users, size=min(n_users, len(users)), replace=False))
    eval_data = evaluate.EvalData.from_split(setting.split, "valid", setting.ml.item_ids).subset(users)

    def fn(model) -> dict:
        system = dual_encoder_system(model, setting, "valid", cache=False, progress=False,
                                     positive_only=positive_only)
        res = evaluate.evaluate(system, eval_data, ks=(k,))
        return {f"recall@{k}": res.mean(f"recall@{k}")}

    return fn


def train_recipe(name: str, mode: str = "quick", *, setting: Setting | None = None,
                 out_dir: str | Path | None = None, max_seconds: float | None = None,
                 stop_at: int | None = None, evaluate_every: int = 0, progress: bool = True):
    """Train recipe ``name``.

    Checkpoints go to ``out_dir`` (default ``.cache/runs/<name>-<mode>``): rerunning the same
    command after an interruption resumes where it stopped.

    Args:
        name: a key of :data:`RECIPES`.
        mode: "quick" or "full" (the steps, :class:`RunLength`).
        setting: the data (None: :func:`build_setting`).
        out_dir: the checkpoint folder.
        max_seconds: stop (resumably) after this long.
        stop_at: stop (resumably) at this step.
        evaluate_every: validate every this many steps (0: never), keeping the best adapter.
        progress: show progress bars.

    Returns:
        The Trainer (its model holds the adapter).
    """
    from llmrec_lib import train
    from llmrec_lib.encoders import DualEncoder

    setting = setting or build_setting()
    enc, tr = recipe(name, mode)
    if evaluate_every:
        tr = replace(tr, eval_every=evaluate_every)
    config.seed_everything(tr.seed)
    model = DualEncoder(enc)
    pairs = train.training_pairs(setting.split.train, positive_only=tr.positive_only)
    out = Path(out_dir) if out_dir else config.cache_dir("runs") / f"{name}-{config.get_mode(mode)}"
    cls = train.SequenceTrainer if tr.positions else train.Trainer
    trainer = cls(model, pairs, *setting.texts_for(enc), tr, out_dir=out,
                  evaluate_fn=validation_fn(setting, positive_only=tr.positive_only)
                  if evaluate_every else None,
                  catalogue=setting.ml.item_ids, progress=progress)
    trainer.fit(max_seconds=max_seconds, stop_at=stop_at)
    return trainer


def publish(trainer, name: str, seconds: float, command: str) -> Path:
    """Save the trained adapter (bf16) under ``artifacts/adapters/<name>`` with how it was made.

    A run that validated during training publishes its validation-best weights (the
    ``best/`` adapter the trainer kept), not the last ones; ``best_step`` says which.

    Args:
        trainer: the finished Trainer.
        name: the recipe's name.
        seconds: the training time, stored with it.
        command: the command that reproduces it, stored with it.

    Returns:
        The adapter's folder.
    """
    import torch

    best = trainer.out_dir / "best" if trainer.out_dir else None
    if trainer.state.best_step > 0 and best is not None and (best / "adapter.safetensors").is_file():
        trainer.model.load_adapter(best)

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=config.PROJECT_ROOT).stdout.strip()
    except OSError:  # pragma: no cover
        commit = "unknown"
    meta = {
        "recipe": name,
        "command": command,
        "train_config": trainer.cfg.to_dict(),
        "steps_done": trainer.state.step,
        "pairs_seen": _pairs_seen(trainer),
        "n_pairs": len(trainer.pairs),
        "wall_seconds": round(seconds, 1),  # of the last process; a resumed run spans several
        "train_seconds_all_steps": round(sum(h["seconds"] for h in trainer.state.history), 1),
        "throughput": trainer.throughput(),
        "loss_first_50": float(np.mean([h["loss"] for h in trainer.state.history[:50]])),
        "loss_last_50": float(np.mean([h["loss"] for h in trainer.state.history[-50:]])),
        "evals": [h for h in trainer.state.history if any(k.startswith("eval_") for k in h)],
        "best_step": trainer.state.best_step,
        # the thread count fixes the order of float sums, so runs with other counts differ in bits
        "hardware": f"{platform.machine()} {platform.processor() or ''} cpus={_cpus()} threads={torch.get_num_threads()}"
                    + (f" gpu={torch.cuda.get_device_name(trainer.model.device)}"
                       if trainer.model.device.type == "cuda" else ""),
        # bf16 autocast runs only where the device has bf16 instructions (config.bf16_is_fast)
        "bf16_autocast": bool(trainer.cfg.use_autocast and config.bf16_is_fast(trainer.model.device.type)),
        "git_commit": commit,
    }
    path = ARTIFACTS / name
    trainer.model.save_adapter(path, meta=meta)
    loss_curve = pd.DataFrame(trainer.state.history)[["step", "loss"]]
    loss_curve.to_csv(path / "loss.csv", index=False, float_format="%.4f")
    return path


def retrain(name: str, setting: Setting | None = None, *, evaluate_every: int = 0) -> Path:
    """Full mode's one retraining step: train recipe ``name``, publish it, store its test lists.

    Chapter 03 retrains its recipes this way in full mode; it is also what
    ``python -m llmrec_lib.recipes train NAME --mode full`` followed by ``evaluate NAME`` does,
    so the published adapter's record carries that command.

    Args:
        name: a key of :data:`RECIPES`.
        setting: the data (None: :func:`build_setting`).
        evaluate_every: validate every this many steps (0: never), keeping the best adapter.

    Returns:
        The published adapter's folder (``artifacts/adapters/<name>``).
    """
    setting = setting or build_setting()
    start = time.perf_counter()
    trainer = train_recipe(name, "full", setting=setting, evaluate_every=evaluate_every)
    command = f"python -m llmrec_lib.recipes train {name} --mode full"
    if evaluate_every:
        command += f" --eval-every {evaluate_every}"
    path = publish(trainer, name, time.perf_counter() - start, command)
    evaluate_published(name, setting, "test", save=True)  # chapter 09's top-100 lists
    return path


def _pairs_seen(trainer) -> int:
    """Training pairs over all steps done. An every-position step holds a varying number of
    pairs; its windows are a pure function of (seed, step), so they are replayed and counted."""
    if not getattr(trainer.cfg, "positions", 0):
        return trainer.state.step * trainer.cfg.batch_size * trainer.world
    return int(sum(len(w[3]) for s in range(trainer.state.step) for w in trainer.windows(s))) * trainer.world


def _cpus() -> int:
    return config.usable_cpus()


def main(argv=None) -> int:
    """The command line: ``train``, ``evaluate``, ``tune-point`` or ``list`` recipes (see the
    module docstring).

    Args:
        argv: the arguments (None: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m llmrec_lib.recipes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a recipe; full mode publishes its adapter to artifacts/")
    t.add_argument("name", choices=sorted(RECIPES))
    t.add_argument("--mode", default="full", choices=config.MODES)
    t.add_argument("--eval-every", type=int, default=0)
    t.add_argument("--max-seconds", type=float, default=None)
    e = sub.add_parser("evaluate", help="evaluate a committed adapter; store its top-100 lists beside it")
    e.add_argument("name", choices=sorted(RECIPES))
    e.add_argument("--stage", default="test", choices=("valid", "test"))
    e.add_argument("--whole-history", nargs=2, type=float, default=None, metavar=("WEIGHT", "BETA"),
                   help="evaluate chapter 03's serving point: whole-history weight and prior beta")
    e.add_argument("--depth", type=int, default=None,
                   help=f"store lists this long (default 100; {FUSION_LIST_DEPTH} for rank fusion)")
    p = sub.add_parser("tune-point", help="choose a committed adapter's serving point on "
                       "validation; store its test lists there, and its seeds'")
    p.add_argument("name", choices=sorted(RECIPES))
    sub.add_parser("list", help="list the recipes")
    args = parser.parse_args(argv)
    if args.cmd == "tune-point":
        setting = build_setting()
        point = tuple(tune_point(args.name, setting)["point"])
        print(f"{args.name}: (weight, beta) = {point} on validation")
        for n in [args.name, *seeds_of(args.name)]:
            res = evaluate_published(n, setting, "test", save=True, point=point)
            print(n, f"test recall@50 {res.mean('recall@50'):.4f}", "saved", ranking_path(n, "test", point))
        return 0
    if args.cmd == "list":
        for n, (enc, tr) in RECIPES.items():
            print(n, json.dumps(enc.to_dict()), json.dumps(tr.to_dict()))
        return 0
    if args.cmd == "evaluate":
        point = tuple(args.whole_history) if args.whole_history else None
        res = evaluate_published(args.name, stage=args.stage, save=True, point=point, depth=args.depth)
        print(res.summary().round(4).to_string())
        print("saved", ranking_path(args.name, args.stage, point))
        return 0
    joined = distributed.init_distributed()
    start = time.perf_counter()
    trainer = train_recipe(args.name, args.mode, evaluate_every=args.eval_every, max_seconds=args.max_seconds,
                           progress=distributed.rank() == 0)
    secs = time.perf_counter() - start
    if distributed.rank() == 0:
        print(json.dumps({"steps": trainer.state.step, "seconds": round(secs, 1), **trainer.throughput()}))
    if joined:
        import torch.distributed as dist

        dist.destroy_process_group()
    done = trainer.state.step >= trainer.cfg.steps or (
        trainer.cfg.patience and trainer.state.evals_without_improvement >= trainer.cfg.patience)
    if args.mode == "full" and done and distributed.rank() == 0:
        cmd = "python -m llmrec_lib.recipes " + " ".join(argv if argv is not None else sys.argv[1:])
        print("published", publish(trainer, args.name, secs, cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
