"""Training the dual encoder: pairs, batches, a resumable trainer, distributed negatives.

A training example is a pair (member prompt, next engaged item), as in LinkedIn's recipe:

* the **user prompt** renders the user's positives made *strictly before* the target's time
  (never the target itself, never anything later), newest kept under a token budget;
* the **item** is the next positive; its text is the item prompt of chapter 01;
* **hard negatives** are items the same user saw and disliked (rating <= 2), the book's stand-in
  for "shown but not engaged" impressions.

Only ``split.train`` rows are used, so validation and test targets never leak into training.

The :class:`Trainer` runs a plain loop a reader can follow top to bottom: a progress bar,
periodic validation Recall@K, early stopping, and checkpoints with everything needed to resume
(adapter, optimizer, scheduler, RNG states, position in the data) so an interrupted run
continues with no lost and no repeated steps. Under ``torchrun`` the same loop runs with DDP,
and each rank's in-batch negatives are gathered from every rank (gradients flow through the
gather), so the negatives per step grow with the number of processes.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from llmrec_lib import config, distributed, interactions

# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


@dataclass
class Pairs:
    """Training pairs, one row per (user, next positive item).

    ``hist_start[i]:hist_end[i]`` indexes the user's chronological rows in ``history`` (the
    ratings allowed as input for pair i: strictly earlier than the target); ``negatives`` holds
    each user's seen-but-disliked items.
    """

    user_id: np.ndarray  # (P,)
    item_id: np.ndarray  # (P,) the target
    timestamp: np.ndarray  # (P,)
    hist_start: np.ndarray  # (P,) row range into `history`
    hist_end: np.ndarray  # (P,)
    history: pd.DataFrame  # the ratings histories are drawn from, sorted by user and time
    negatives: dict[int, np.ndarray]  # user_id -> disliked item ids

    def __len__(self) -> int:
        return len(self.user_id)

    def subset(self, index: np.ndarray) -> "Pairs":
        """The pairs at ``index`` (e.g. a held-out share), sharing the same history and negatives."""
        index = np.asarray(index)
        return Pairs(self.user_id[index], self.item_id[index], self.timestamp[index],
                     self.hist_start[index], self.hist_end[index], self.history, self.negatives)


def training_pairs(
    train: pd.DataFrame,
    *,
    positive_only: bool = True,
    min_history: int = 1,
    max_pairs_per_user: int | None = None,
    seed: int = config.DEFAULT_SEED,
) -> Pairs:
    """All (history before t, positive at t) pairs from training ratings.

    Args:
        train: ``split.train``.
        positive_only: histories hold positives only (LinkedIn's best setting); False keeps
            every rating (the "full history" ablation; prompts then show the rating).
        min_history: skip targets with fewer earlier history rows than this.
        max_pairs_per_user: cap per user (a random, seeded subset) so heavy raters do not
            dominate an epoch.
        seed: the seed of the per-user subset.

    Returns:
        The :class:`Pairs`.
    """
    interactions.require_columns(train, interactions.RATING_COLUMNS, "training ratings",
                                 "Pass split.train.")
    r = interactions.in_time_order(train)
    hist = interactions.positives(r) if positive_only else r
    pos = r[r["rating"] >= interactions.POSITIVE_MIN]

    users = hist["user_id"].to_numpy()
    times = hist["timestamp"].to_numpy()
    # start row of each user's block in `hist`
    u_start = pd.Series(np.arange(len(hist)), index=users).groupby(level=0).min()
    u_end = pd.Series(np.arange(len(hist)), index=users).groupby(level=0).max() + 1

    rng = np.random.default_rng(seed)
    out_u, out_i, out_t, out_s, out_e = [], [], [], [], []
    for user, grp in pos.groupby("user_id", sort=True):
        if user not in u_start.index:
            continue
        s, e = int(u_start[user]), int(u_end[user])
        # history rows strictly earlier in time than each target (the one tie rule)
        ends = s + interactions.history_end(times[s:e], grp["timestamp"].to_numpy())
        keep = ends - s >= min_history
        idx = np.flatnonzero(keep)
        if max_pairs_per_user is not None and len(idx) > max_pairs_per_user:
            idx = np.sort(rng.choice(idx, size=max_pairs_per_user, replace=False))
        out_u.append(np.full(len(idx), user))
        out_i.append(grp["item_id"].to_numpy()[idx])
        out_t.append(grp["timestamp"].to_numpy()[idx])
        out_s.append(np.full(len(idx), s))
        out_e.append(ends[idx])
    neg = r[r["rating"] <= interactions.NEGATIVE_MAX]
    negatives = {int(u): g["item_id"].to_numpy() for u, g in neg.groupby("user_id")}
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return Pairs(cat(out_u, np.int64), cat(out_i, np.int64), cat(out_t, np.int64),
                 cat(out_s, np.int64), cat(out_e, np.int64), hist, negatives)


def sample_hard_negatives(pairs: Pairs, index: np.ndarray, k: int, rng: np.random.Generator,
                          fallback: np.ndarray) -> np.ndarray:
    """(len(index), k) item ids: each pair's user's disliked items, drawn with replacement;
    users with none get random catalogue items from ``fallback`` (then they are plain random
    negatives, which the chapter counts).

    Args:
        pairs: the training pairs, with each user's disliked items.
        index: the pairs of the batch.
        k: negatives per pair.
        rng: the batch's generator (seeded by step, so a resumed run draws the same).
        fallback: the catalogue's item ids.

    Returns:
        The (len(index), k) item ids.
    """
    return user_hard_negatives(pairs.negatives, pairs.user_id[np.asarray(index, dtype=np.int64)],
                               k, rng, fallback)


def user_hard_negatives(negatives: dict, users, k: int, rng: np.random.Generator,
                        fallback: np.ndarray) -> np.ndarray:
    """Each user's disliked items, drawn with replacement, or random ``fallback`` items for a
    user with none (:func:`sample_hard_negatives` for a batch of pairs; the every-position
    trainer draws per target).

    Args:
        negatives: ``{user: disliked item ids}`` (``Pairs.negatives``).
        users: one user id per row.
        k: negatives per row.
        rng: the generator (seeded by step, so a resumed run draws the same).
        fallback: the catalogue's item ids.

    Returns:
        The (len(users), k) item ids.
    """
    out = np.empty((len(users), k), dtype=np.int64)
    for row, u in enumerate(users):
        pool = negatives.get(int(u))
        src = pool if pool is not None and len(pool) else fallback
        out[row] = rng.choice(src, size=k, replace=True)
    return out


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How to train; saved in every checkpoint and checked on resume."""

    steps: int = 200
    batch_size: int = 16  # pairs per step on each process
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 20
    hard_negatives: int = 0
    loss: str = "infonce"  # "infonce" | "bce"
    temperature: float = 0.05
    learn_temperature: bool = False
    matryoshka_dims: tuple[int, ...] | None = None
    mask_false_negatives: bool = True
    positive_only: bool = True
    user_budget: int = 128
    history_items: int = 20  # at most this many most recent history items in a prompt
    eval_every: int = 0  # 0: only at the end
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    checkpoint_every: int = 50
    seed: int = config.DEFAULT_SEED
    use_autocast: bool = True
    # Popularity-aware objectives (chapter 03). "in_batch": the other rows' positives are the
    # negatives, with log-Q correction when ``log_q``; "catalogue": every catalogue item is a
    # negative, scored against a cached item table refreshed every ``refresh_every`` steps.
    objective: str = "in_batch"
    log_q: bool = False
    refresh_every: int = 100
    # mixed negatives: this many catalogue items drawn uniformly per step, encoded live and
    # shared by every row (SequenceTrainer, objective "in_batch")
    uniform_negatives: int = 0
    # Every-position training: > 0 makes a step take ``batch_size`` *users*, one forward each
    # over a window of their history, and up to ``positions`` next-item targets per window.
    positions: int = 0
    # loss="bce" only: the cosine above which sigmoid((s - bias) / t) says "yes"
    bce_bias: float = 0.5

    def to_dict(self) -> dict:
        """The config as JSON-ready values, for a checkpoint or a run's meta."""
        return config.json_ready(self)


@dataclass
class TrainState:
    """What a checkpoint restores besides the weights: the step, the best validation metric
    and its step, the evaluations without improvement (early stopping) and the log.
    """
    step: int = 0
    best_metric: float = -math.inf
    best_step: int = -1
    evals_without_improvement: int = 0
    history: list = field(default_factory=list)  # [{"step", "loss", "seconds", ...}]


def _rng_state() -> dict:
    # NumPy draws in training come from generators seeded by (seed, step), so they need no state
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])


def batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """The pair indices of global step ``step``: a seeded permutation per epoch, sliced.

    A pure function of (step, seed), so a resumed run draws exactly the batches the
    interrupted one would have, and each rank takes its own slice of the global batch.

    Args:
        n: the number of pairs.
        batch_size: pairs per rank and step.
        step: the global step.
        seed: the run's seed.
        rank: this process's rank.
        world: the number of processes.

    Returns:
        The ``batch_size`` pair indices.
    """
    global_bs = batch_size * world
    per_epoch = n // global_bs
    if per_epoch == 0:
        raise ValueError(f"{n} pairs cannot fill one global batch of {global_bs}")
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    start = pos * global_bs + rank * batch_size
    return perm[start : start + batch_size]


def linear_warmup_cosine(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at ``step``: a linear ramp over ``warmup`` steps (so Adam's
    first updates, made from noisy moments, stay small), then a cosine decay to 0 at ``total``.

    Args:
        step: the step (from 0).
        warmup: the ramp's length.
        total: the run's length.

    Returns:
        A factor in (0, 1].
    """
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Trainer:
    """Fine-tunes a :class:`~llmrec_lib.encoders.DualEncoder` on :class:`Pairs`.

    Args:
        model: the dual encoder (its trainable parameters are the LoRA adapters).
        pairs: training pairs from :func:`training_pairs`.
        item_text: item_id -> item prompt (the text the model encodes for an item).
        history_text: item_id -> the shorter text used inside user prompts.
        cfg: :class:`TrainConfig`.
        out_dir: where checkpoints go; an existing checkpoint there is resumed.
        evaluate_fn: ``model -> {"metric": value, ...}``, called every ``eval_every`` steps and
            at the end; its first key is the early-stopping metric (higher is better).
        catalogue: item ids hard negatives fall back to for users with no disliked items.
    """

    def __init__(self, model, pairs: Pairs, item_text: pd.Series, history_text: pd.Series,
                 cfg: TrainConfig, out_dir: str | Path | None = None,
                 evaluate_fn: Callable | None = None, catalogue: np.ndarray | None = None,
                 progress: bool = True):
        from llmrec_lib import losses

        self.model, self.pairs, self.cfg = model, pairs, cfg
        self.item_text, self.history_text = item_text, history_text
        self.out_dir = Path(out_dir) if out_dir else None
        self.evaluate_fn, self.progress = evaluate_fn, progress
        self.catalogue = np.asarray(catalogue if catalogue is not None else item_text.index.to_numpy())
        self.rank, self.world = distributed.dist_info()
        if cfg.loss not in ("infonce", "bce"):
            raise ValueError(f"loss must be 'infonce' or 'bce', got {cfg.loss!r}")
        base = (losses.InfoNCE(cfg.temperature, learn=cfg.learn_temperature) if cfg.loss == "infonce"
                else losses.BCELoss(cfg.temperature, learn=cfg.learn_temperature, bias=cfg.bce_bias))
        self.loss_fn = losses.MatryoshkaLoss(base, cfg.matryoshka_dims) if cfg.matryoshka_dims else base
        params = model.trainable_parameters() + [p for p in self.loss_fn.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.params = params
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: linear_warmup_cosine(s, cfg.warmup_steps, cfg.steps))
        self.state = TrainState()
        self.last_tokens = self.last_user_len = self.last_pairs = 0
        train = pairs.history
        liked = train[train["rating"] >= interactions.POSITIVE_MIN]
        self.user_liked = {int(u): set(g.tolist()) for u, g in liked.groupby("user_id")["item_id"]}
        if cfg.objective not in ("in_batch", "catalogue"):
            raise ValueError(f"objective must be 'in_batch' or 'catalogue', got {cfg.objective!r}")
        self.column = pd.Series(np.arange(len(self.catalogue)), index=self.catalogue)
        counts = liked["item_id"].value_counts().reindex(self.catalogue, fill_value=0)
        self.item_log_q = losses.log_q(counts.to_numpy()) if cfg.log_q else None
        self.table = None  # the cached catalogue embeddings of the "catalogue" objective
        self.resumed_from = self._maybe_resume()

    # ---- batches -------------------------------------------------------------------------
    def user_prompts_for(self, index: np.ndarray) -> list[str]:
        """Prompts of the pairs ``index``: each pair's last ``history_items`` earlier items."""
        from llmrec_lib import text

        p, cfg = self.pairs, self.cfg
        rows = []
        for j, i in enumerate(index):
            s = max(int(p.hist_start[i]), int(p.hist_end[i]) - cfg.history_items)
            chunk = p.history.iloc[s : int(p.hist_end[i])]
            rows.append(chunk.assign(user_id=j))
        mini = pd.concat(rows, ignore_index=True)
        out = text.user_prompts(mini, self.history_text, self.model.tokenizer, budget=cfg.user_budget,
                                positive_only=cfg.positive_only, show_rating=not cfg.positive_only,
                                users=range(len(index)))
        return out["prompt"].tolist()

    def make_batch(self, step: int) -> dict:
        """The batch of global step ``step`` (a function of the step and seed): user prompts, item
        texts, hard negatives.
        """
        cfg, p = self.cfg, self.pairs
        idx = batch_indices(len(p), cfg.batch_size, step, cfg.seed, self.rank, self.world)
        rng = np.random.default_rng([cfg.seed, step, self.rank, 7])
        items = p.item_id[idx]
        hard = (sample_hard_negatives(p, idx, cfg.hard_negatives, rng, self.catalogue)
                if cfg.hard_negatives else np.zeros((len(idx), 0), dtype=np.int64))
        return {
            "index": idx,
            "users": self.user_prompts_for(idx),
            "items": [self.item_text[i] for i in items],
            "hard": [self.item_text[i] for i in hard.reshape(-1)],
            "item_ids": torch.as_tensor(items),
            "user_positives": [self.user_liked.get(int(u), set()) for u in p.user_id[idx]],
        }

    # ---- one step ------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Encode the batch's users and items (and hard negatives) and return the contrastive loss."""
        cfg, m = self.cfg, self.model
        k = cfg.hard_negatives
        user_tok = m.tokenize(batch["users"], m.cfg.user_max_tokens)  # (B, T_u), padded to the longest
        item_tok = m.tokenize(batch["items"] + batch["hard"], m.cfg.item_max_tokens)  # (B * (1 + k), T_i)
        self.last_tokens = int(user_tok["input_ids"].numel() + item_tok["input_ids"].numel())
        self.last_user_len = int(user_tok["input_ids"].shape[1])
        self.last_pairs = len(batch["users"])
        with config.autocast(m.device.type, enabled=cfg.use_autocast):
            users, items = m(user_tok, item_tok)
        b = len(batch["users"])
        pos, hard = items[:b], (items[b:].reshape(b, k, -1) if k else None)
        extra = {}
        if self.item_log_q is not None:
            extra["log_q"] = self.item_log_q[self.column.reindex(batch["item_ids"].numpy()).to_numpy()]
        return self.loss_fn(users, pos, hard=hard,
                            item_ids=batch["item_ids"] if cfg.mask_false_negatives else None,
                            user_positives=batch["user_positives"] if cfg.mask_false_negatives else None,
                            **extra)

    def step(self) -> float:
        """One optimisation step (gradients averaged across ranks); returns the loss."""
        self.model.train()
        batch = self.make_batch(self.state.step)
        loss = self.compute_loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            distributed.average_gradients(self.params, self.world)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.state.step += 1
        return float(loss.detach())

    # ---- the loop ------------------------------------------------------------------------
    def fit(self, max_seconds: float | None = None, stop_at: int | None = None) -> TrainState:
        """Train until ``cfg.steps`` (or ``max_seconds``, ``stop_at`` steps, or early stopping).

        Stopping early (``max_seconds``, ``stop_at``, an interrupt) leaves a checkpoint from which
        a new Trainer on the same ``out_dir`` continues; the schedule still runs to ``cfg.steps``.
        """
        from tqdm.auto import tqdm

        cfg = self.cfg
        start = time.perf_counter()
        bar = tqdm(total=cfg.steps, initial=self.state.step, desc="train", disable=not self.progress or self.rank)
        # a run that already stopped early (and was resumed from its checkpoint) stays stopped
        stopped = bool(cfg.patience) and self.state.evals_without_improvement >= cfg.patience
        first_step = self.state.step
        while self.state.step < cfg.steps and not stopped:
            t0 = time.perf_counter()
            loss = self.step()
            record = {"step": self.state.step, "loss": loss, "seconds": time.perf_counter() - t0,
                      "lr": self.sched.get_last_lr()[0], "tokens": self.last_tokens,
                      "user_len": self.last_user_len, "pairs": self.last_pairs}
            self.state.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            s = self.state.step
            if self.evaluate_fn and cfg.eval_every and s % cfg.eval_every == 0 and s < cfg.steps:
                stopped = self._evaluate()
            if self.out_dir and cfg.checkpoint_every and s % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
            if stop_at is not None and s >= stop_at:
                break
        bar.close()
        if self.evaluate_fn and not stopped and self.state.step >= cfg.steps > first_step:
            self._evaluate()  # the final evaluation, once (not again when a finished run is resumed)
        if self.out_dir:
            self.save_checkpoint()
        return self.state

    def _evaluate(self) -> bool:
        self.model.eval()
        metrics = self.evaluate_fn(self.model)
        key = next(iter(metrics))
        self.state.history[-1].update({f"eval_{k}": float(v) for k, v in metrics.items()})
        if metrics[key] > self.state.best_metric:
            self.state.best_metric, self.state.best_step = float(metrics[key]), self.state.step
            self.state.evals_without_improvement = 0
            if self.out_dir and self.rank == 0:
                self.model.save_adapter(self.out_dir / "best")
        else:
            self.state.evals_without_improvement += 1
        return bool(self.cfg.patience) and self.state.evals_without_improvement >= self.cfg.patience

    # ---- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Write the adapter, optimizer, scheduler, RNG and loop state; atomic rename."""
        if self.rank != 0 or self.out_dir is None:
            return None
        final = self.out_dir / "checkpoint"
        tmp = self.out_dir / "checkpoint.tmp"
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.model.save_adapter(tmp / "adapter", dtype=torch.float32)  # exact resume
        torch.save({"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                    "loss": self.loss_fn.state_dict(), "rng": _rng_state()}, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps({"train_config": self.cfg.to_dict(),
                                                     "state": asdict(self.state)}, indent=1))
        if final.exists():
            import shutil

            old = self.out_dir / "checkpoint.old"
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old)
        else:
            tmp.rename(final)
        return final

    def _maybe_resume(self) -> int | None:
        ckpt = self.out_dir / "checkpoint" if self.out_dir else None
        if ckpt is None or not (ckpt / "state.json").exists():
            return None
        saved = json.loads((ckpt / "state.json").read_text())
        mine = json.loads(json.dumps(self.cfg.to_dict()))
        # a setting added after the checkpoint was written reads as its default
        default = json.loads(json.dumps(TrainConfig().to_dict()))
        diff = {k for k in mine if k not in ("steps", "eval_every", "checkpoint_every", "patience")
                and saved["train_config"].get(k, default[k]) != mine[k]}
        if diff:
            raise ValueError(
                f"{ckpt} was written with different settings ({sorted(diff)}); resume with the same "
                "TrainConfig, or pass a fresh out_dir to start over.")
        self.model.load_adapter(ckpt / "adapter")
        blob = torch.load(ckpt / "trainer.pt", weights_only=True)
        self.opt.load_state_dict(blob["optimizer"])
        self.sched.load_state_dict(blob["scheduler"])
        self.loss_fn.load_state_dict(blob["loss"])
        _set_rng_state(blob["rng"])
        st = saved["state"]
        self.state = TrainState(**st)
        return self.state.step

    def throughput(self) -> dict:
        """Pairs and tokens (padding included: it is computed too) per second over the recorded
        steps of this process; the first few steps are warm-up and skipped."""
        hist = [h for h in self.state.history[3:] if "tokens" in h] or self.state.history[3:]
        secs = np.array([h["seconds"] for h in hist] or [np.nan])
        per_step = float(np.nanmedian(secs))
        pairs = np.median([h["pairs"] for h in hist]) if hist and "pairs" in hist[0] else self.cfg.batch_size
        out = {"seconds_per_step": per_step, "pairs_per_second": float(pairs) * self.world / per_step}
        if hist and "tokens" in hist[0]:
            out["tokens_per_step"] = float(np.median([h["tokens"] for h in hist]))
            out["user_len_per_step"] = float(np.median([h["user_len"] for h in hist]))
            out["tokens_per_second"] = out["tokens_per_step"] * self.world / per_step
        return out


# --------------------------------------------------------------------------------------------
# Every-position training over a cached catalogue
# --------------------------------------------------------------------------------------------


def prefix_boundaries(times: np.ndarray, start: int, stop: int, targets: np.ndarray) -> np.ndarray:
    """For each target row j of one user's time-sorted sequence, how many rows of the window
    ``[start, stop)`` its history may use: the rows strictly earlier in time than row j (the
    library's one tie rule, as in :func:`training_pairs`: same-second rows are not history).

    Args:
        times: the user's timestamps, sorted.
        start: the window's first row.
        stop: the row after the window's last.
        targets: the target rows (indices into ``times``).

    Returns:
        One count per target, each in [0, stop - start].
    """
    return interactions.history_end(times[start:stop], times[targets])


class SequenceTrainer(Trainer):
    """Every-position training: one member forward, a (prefix -> next item) pair at every
    item boundary (see :func:`llmrec_lib.encoders.prefix_pool`).

    A step draws ``batch_size`` users uniformly (so every member counts the same, as in the
    metric, however many ratings they have), and for each a window of consecutive positives
    that fits ``user_budget`` tokens, ending at a random target. Up to ``positions`` targets
    inside the window (always its last one) are paired with the prefix strictly before them.
    With ``objective="catalogue"`` the loss is a softmax over the whole catalogue
    (:class:`~llmrec_lib.losses.CatalogueSoftmax`); the user's other training positives are
    masked out of the negatives (false negatives), as the in-batch loss does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from llmrec_lib import losses, text

        cfg, h = self.cfg, self.pairs.history
        if cfg.positions < 1:
            raise ValueError("SequenceTrainer needs TrainConfig.positions >= 1")
        if cfg.matryoshka_dims:
            raise ValueError("SequenceTrainer does not train Matryoshka; use Trainer for it")
        if cfg.objective == "catalogue" and (cfg.hard_negatives or cfg.loss != "infonce"):
            raise ValueError("objective='catalogue' is a softmax over the catalogue: no hard "
                             "negatives or BCE; use objective='in_batch'")
        if cfg.objective == "catalogue":
            self.loss_fn = losses.CatalogueSoftmax(cfg.temperature)
        # positive-only histories (the book's), or every rating with its score shown in the
        # prompt (the full-history ablation); targets are always positives
        full = not cfg.positive_only
        seqs = interactions.Sequences.from_ratings(h, "training ratings", every_rating=full)
        self.seq_items, self.seq_times, self.seq_rating = seqs.item_id, seqs.timestamp, seqs.rating
        keep = seqs.count >= 2  # a target needs one earlier row
        if full:  # ... and must be a positive after the first row
            liked = seqs.rating >= interactions.POSITIVE_MIN
            self.liked_rows = [np.flatnonzero(liked[s + 1 : s + c]) + s + 1
                               for s, c in zip(seqs.start, seqs.count)]
            keep &= np.array([len(r) > 0 for r in self.liked_rows])
            self.liked_rows = [r for r, k in zip(self.liked_rows, keep) if k]
        self.seq_users, self.seq_start, self.seq_count = (
            seqs.users[keep], seqs.start[keep], seqs.count[keep])
        tok = self.model.tokenizer
        pieces = self.history_text.reindex(np.unique(self.seq_items)).astype(str)
        self.piece_len = pd.Series(text.count_tokens(tok, pieces.tolist(), add_special_tokens=False),
                                   index=pieces.index)
        # each row's tokens in a prompt: its item text, plus "[RATED] 4.5" when scores show
        self.row_len = self.piece_len.reindex(self.seq_items).to_numpy()
        if full:
            scores = np.unique(self.seq_rating)
            shown = text.count_tokens(tok, [f"{text.RATED} {text.format_rating(r)}" for r in scores],
                                      add_special_tokens=False)
            self.row_len = self.row_len + pd.Series(shown, index=scores).reindex(self.seq_rating).to_numpy()
        self.prefix_len = int(text.count_tokens(tok, [text.HISTORY])[0])
        self.item_token = tok.convert_tokens_to_ids(text.ITEM)

    def windows(self, step: int) -> list[tuple[int, int, int, np.ndarray]]:
        """(user, start, stop, targets) per drawn user: rows ``[start, stop)`` of the sequence
        arrays form the prompt and ``targets`` are rows in ``(start, stop]``. A pure function
        of (seed, step, rank), so a resumed run draws the same windows."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step, self.rank, 11])
        room = cfg.user_budget - self.prefix_len
        out = []
        for u in rng.choice(len(self.seq_users), size=cfg.batch_size, replace=True):
            s0, n = int(self.seq_start[u]), int(self.seq_count[u])
            if self.seq_rating is None:
                stop = s0 + int(rng.integers(1, n))  # the last target's row
            else:
                stop = int(rng.choice(self.liked_rows[u]))  # ... a positive
            fit = interactions.newest_that_fit(self.row_len[s0:stop], room)
            start = stop - max(fit, 1)
            cand = np.arange(start + 1, stop + 1)
            cand = cand[prefix_boundaries(self.seq_times, start, stop, cand) > 0]
            if self.seq_rating is not None:
                cand = cand[self.seq_rating[cand] >= interactions.POSITIVE_MIN]
            if len(cand) == 0:
                continue
            others = cand[:-1]
            pick = rng.choice(others, size=min(len(others), cfg.positions - 1), replace=False)
            out.append((int(self.seq_users[u]), start, stop, np.sort(np.append(pick, cand[-1]))))
        return out

    def make_batch(self, step: int) -> dict:
        """The windows of step ``step`` as one prompt each, with the target items and shared
        negatives.
        """
        from llmrec_lib import text

        wins = self.windows(step)
        frames, rows, n_items, targets = [], [], [], []
        for r, (_, start, stop, tgt) in enumerate(wins):
            score = 5.0 if self.seq_rating is None else self.seq_rating[start:stop]
            frames.append(pd.DataFrame({"user_id": r, "item_id": self.seq_items[start:stop],
                                        "rating": score, "timestamp": self.seq_times[start:stop]}))
            b = prefix_boundaries(self.seq_times, start, stop, tgt)
            rows += [r] * len(tgt)
            n_items += b.tolist()
            targets += self.seq_items[tgt].tolist()
        full = not self.cfg.positive_only
        prompts = text.user_prompts(pd.concat(frames, ignore_index=True), self.history_text,
                                    self.model.tokenizer, budget=None, users=range(len(wins)),
                                    positive_only=not full, show_rating=full)
        items = np.asarray(targets, dtype=np.int64)
        rng = np.random.default_rng([self.cfg.seed, step, self.rank, 13])
        shared = rng.choice(self.catalogue, size=self.cfg.uniform_negatives, replace=False)
        user_ids = [wins[r][0] for r in rows]
        hard = np.zeros((len(items), 0), dtype=np.int64)
        if self.cfg.hard_negatives:  # each target's user's dislikes (own generator: the
            # other draws stay those of the recipe without hard negatives)
            hard = user_hard_negatives(self.pairs.negatives, user_ids, self.cfg.hard_negatives,
                                       np.random.default_rng([self.cfg.seed, step, self.rank, 17]),
                                       self.catalogue)
        return {"users": prompts["prompt"].tolist(), "rows": np.asarray(rows), "n_items": np.asarray(n_items),
                "items": [self.item_text[i] for i in items], "item_ids": torch.as_tensor(items),
                "user_ids": user_ids,
                "shared": [self.item_text[i] for i in shared], "shared_ids": torch.as_tensor(shared),
                "hard": [self.item_text[i] for i in hard.reshape(-1)]}

    def sampling_log_q(self, cols: np.ndarray, n_pairs: int) -> torch.Tensor:
        """log of how often each column is expected among one step's candidates: ``n_pairs``
        positives drawn by popularity plus the uniform draws (mixed negatives' correction)."""
        m, n = self.cfg.uniform_negatives, len(self.catalogue)
        return torch.log(n_pairs * self.item_log_q[cols].exp() + m / n)

    def refresh_table(self) -> None:
        """Re-encode the whole catalogue with the current weights (no gradient)."""
        vecs = self.model.encode_texts(self.item_text.reindex(self.catalogue).tolist(),
                                       self.model.cfg.item_max_tokens, progress=False)
        self.table = torch.from_numpy(vecs)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Encode each window once, read a user vector at every target's prefix end, and return the
        in-batch or catalogue loss.
        """
        cfg, m = self.cfg, self.model
        user_tok = m.tokenize(batch["users"], cfg.user_budget)  # (B, T), nothing cut: windows fit
        hard_texts = batch.get("hard", [])
        item_tok = m.tokenize(batch["items"] + batch["shared"] + hard_texts,
                              m.cfg.item_max_tokens)  # (P + M + P * k, T_i)
        ids = user_tok["input_ids"]
        # the token position where each item starts; a prefix of n items ends before item n+1
        starts = [torch.nonzero(row == self.item_token).flatten() for row in ids]
        lengths = user_tok["attention_mask"].sum(dim=1)
        ends = torch.tensor([int(starts[r][n]) if n < len(starts[r]) else int(lengths[r])
                             for r, n in zip(batch["rows"], batch["n_items"])])
        self.last_tokens = int(ids.numel() + item_tok["input_ids"].numel())
        self.last_pairs = len(batch["items"])  # every-position: several pairs per member
        self.last_user_len = int(ids.shape[1])
        with config.autocast(m.device.type, enabled=cfg.use_autocast):
            users = m.embed_prefixes(**user_tok, rows=torch.as_tensor(batch["rows"]), ends=ends)
            items = m.embed(**item_tok)
        n_pos, n_shared = len(batch["items"]), len(batch["shared"])
        k = len(hard_texts) // max(n_pos, 1)
        hard = items[n_pos + n_shared :].reshape(n_pos, k, -1) if k else None
        items, shared = items[:n_pos], items[n_pos : n_pos + n_shared]
        cols = torch.from_numpy(self.column.reindex(batch["item_ids"].numpy()).to_numpy(np.int64, copy=True))
        if cfg.objective == "in_batch":
            extra = {}
            if len(shared):
                extra |= {"shared": shared, "shared_ids": batch["shared_ids"]}
            if self.item_log_q is not None:
                extra["log_q"] = self.sampling_log_q(cols, n_pos)
                if len(shared):
                    shared_cols = self.column.reindex(batch["shared_ids"].numpy()).to_numpy(np.int64)
                    extra["shared_log_q"] = self.sampling_log_q(torch.from_numpy(shared_cols), n_pos)
            liked = [self.user_liked.get(u, set()) for u in batch["user_ids"]] if cfg.mask_false_negatives else None
            return self.loss_fn(users, items, hard=hard, item_ids=batch["item_ids"],
                                user_positives=liked, **extra)
        mask = None
        if cfg.mask_false_negatives:
            mask = torch.zeros((len(cols), len(self.catalogue)), dtype=torch.bool)
            for p, u in enumerate(batch["user_ids"]):
                liked = self.column.reindex(list(self.user_liked.get(u, ()))).dropna().to_numpy(np.int64)
                mask[p, torch.from_numpy(liked.copy())] = True
        return self.loss_fn(users, items, table=self.table, columns=cols, mask=mask)

    def step(self) -> float:
        """Refresh the catalogue table when due (``objective='catalogue'``), then one step as
        :meth:`Trainer.step`.
        """
        if self.cfg.objective == "catalogue" and (self.table is None or self.state.step % self.cfg.refresh_every == 0):
            self.refresh_table()
        return super().step()


# --------------------------------------------------------------------------------------------
# Throughput: model FLOPs and utilisation against the measured matmul peak
# --------------------------------------------------------------------------------------------


def transformer_flops(n_params: int, n_tokens: int, n_layers: int, hidden: int, seq_len: int,
                      trainable_weights: bool = False) -> float:
    """FLOPs of one forward + backward over ``n_tokens`` tokens (Kaplan et al. / PaLM appendix).

    Forward: 2 FLOPs per weight per token, plus attention scores and values
    (2 * 2 * seq_len * hidden per token per layer). Backward: twice the forward for the
    activation gradients; the weight gradients (another forward's worth) only when the weights
    themselves train. With LoRA they are frozen, so training costs about 2x, not 3x, a forward.

    Args:
        n_params: the transformer's weights (embeddings left out).
        n_tokens: the tokens processed.
        n_layers: the layer count.
        hidden: the hidden width.
        seq_len: the sequence length (attention's cost).
        trainable_weights: the weights train (full fine-tuning) rather than stay frozen (LoRA).

    Returns:
        The FLOPs.
    """
    forward = 2.0 * n_params * n_tokens + 4.0 * n_layers * seq_len * hidden * n_tokens
    return forward * (3.0 if trainable_weights else 2.0)


# The denominator of MFU lives in config (its time budgets use it too); the name stays here,
# beside the MFU it serves.
matmul_peak_gflops = config.matmul_peak_gflops


def utilisation(trainer: Trainer, peak_gflops: float) -> dict:
    """The trainer's throughput plus achieved GFLOP/s and MFU against ``peak_gflops``.

    FLOPs are counted over the tokens each step really computed (padding included), for the
    transformer layers only (embedding look-ups are not matmuls), with frozen base weights
    unless the encoder is fully fine-tuned.

    Args:
        trainer: a trainer that has run steps.
        peak_gflops: the machine's peak (:func:`matmul_peak_gflops`).

    Returns:
        The throughput dict plus achieved_gflops, peak_gflops and mfu.
    """
    tp = trainer.throughput()
    backbone = trainer.model.backbone
    n_params = sum(p.numel() for n, p in backbone.model.named_parameters()
                   if "embed" not in n and "lm_head" not in n and "lora" not in n)
    flops = transformer_flops(n_params, tp["tokens_per_step"], backbone.n_layers, backbone.hidden_size,
                              seq_len=int(tp["user_len_per_step"]),
                              trainable_weights=trainer.model.cfg.full_finetune)
    achieved = flops / tp["seconds_per_step"] / 1e9
    return {**tp, "achieved_gflops": achieved, "peak_gflops": peak_gflops, "mfu": achieved / peak_gflops}
