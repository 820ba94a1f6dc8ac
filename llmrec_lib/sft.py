"""Supervised fine-tuning of a chat model with LoRA: prompt -> answer pairs, resumable.

RecGPT fine-tunes its LLMs on (prompt, answer) pairs: curriculum tasks, a teacher's
distilled answers, self-training samples. This is the smallest trainer that does that
properly on a CPU:

* **Loss on the answer only.** Each example is rendered with the model's chat template
  exactly as :class:`generation.LocalGenerator` renders a prompt, then the answer and the
  end-of-turn token follow; prompt tokens get label -100, so the model learns to *answer*,
  not to reproduce prompts.
* **LoRA** (peft) on the attention projections; the base weights stay frozen.
* **bf16 autocast** on CPUs with bf16 instructions (measured 3-7x faster than float32 on the
  book's 2-core machines; float32 on CPUs without them, where bf16 is emulated;
  ``benchmarks/bench_train.py`` times both on yours, see :func:`config.autocast`).
* **Resumable.** Every ``save_every`` steps the adapter, optimizer, scheduler, loss history and
  step go to ``out_dir/checkpoint`` (written to a temporary folder, then renamed, so a kill
  never leaves half a checkpoint). Each step's batch is a pure function of (seed, step), so a
  resumed run sees exactly the batches the uninterrupted one would have.
* **Adapter as safetensors** (``adapter_model.safetensors`` + ``adapter_config.json``, what
  peft's ``save_pretrained`` writes), stored in bf16: a LoRA r=8 on SmolLM2's four attention
  projections is about 1.8 MB. :class:`generation.LocalGenerator` loads it with ``adapter_id``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from llmrec_lib import config as _config

IGNORE = -100


@dataclass(frozen=True)
class SFTConfig:
    """Settings of one fine-tuning run (all of them are stored with the adapter)."""

    steps: int = 100
    batch_size: int = 8
    lr: float = 2e-4
    warmup: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: tuple = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_len: int = 512
    seed: int = _config.DEFAULT_SEED
    save_every: int = 20
    use_autocast: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "lora_r", "max_len", "save_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SFTConfig.{name} must be an int >= 1, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"SFTConfig.lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"SFTConfig.warmup must be in [0, steps), got {self.warmup!r}")


def chat_template(tokenizer) -> str:
    """The chat template :class:`generation.LocalGenerator` uses for this tokenizer.

    Args:
        tokenizer: a transformers tokenizer.

    Returns:
        Its own template, or generation.FALLBACK_CHAT_TEMPLATE when it has none.
    """
    from llmrec_lib import generation

    return getattr(tokenizer, "chat_template", None) or generation.FALLBACK_CHAT_TEMPLATE


def encode_example(tokenizer, prompt: str, answer: str, max_len: int = 512,
                   system_prompt: str | None = None) -> tuple[list[int], list[int]]:
    """One example as (input_ids, labels): the rendered prompt (labels -100), then the answer
    and the end-of-turn token (labels = the tokens).

    Prompt and answer are tokenized separately, as at generation time, where the answer's
    tokens follow the prompt's.

    Args:
        tokenizer: the model's tokenizer.
        prompt: the user turn.
        answer: the assistant turn the model learns to write.
        max_len: the longest example, in tokens.
        system_prompt: an optional system turn before the prompt.

    Returns:
        (input_ids, labels), lists of the same length.
    """
    from llmrec_lib import generation

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("answer must be a non-empty string: there is nothing to learn from an empty answer")
    messages = generation.to_messages(prompt, system_prompt)
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template(tokenizer), tokenize=False,
                                         add_generation_prompt=True)
    p_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token: the model could never learn to stop")
    a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [int(eos)]
    ids = list(p_ids) + list(a_ids)
    if len(ids) > max_len:
        raise ValueError(f"example is {len(ids)} tokens (prompt {len(p_ids)}), more than max_len={max_len}; "
                         "shorten the prompt (a smaller history budget) or raise max_len")
    return ids, [IGNORE] * len(p_ids) + list(a_ids)


def collate(batch: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: pad tokens get attention 0 and label -100.

    Args:
        batch: (input_ids, labels) pairs of :func:`encode_example`.
        pad_id: the tokenizer's pad id.

    Returns:
        {"input_ids", "attention_mask", "labels"}, (batch, longest) int64 tensors.
    """
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), int(pad_id), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (ids, lab) in enumerate(batch):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The examples of one step: consecutive slices of a permutation per epoch, drawn from
    (seed, epoch), so any step's batch is known without replaying earlier ones.

    Args:
        n: how many examples.
        batch_size: examples per step.
        seed: the run's seed.
        step: the step, 0-based.

    Returns:
        (batch_size,) int64 example indices.
    """
    if n < 1:
        raise ValueError("no examples to train on")
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, pos = divmod(start + len(out), n)
        perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
        take = min(batch_size - len(out), n - pos)
        out.extend(perm[pos : pos + take].tolist())
    return np.asarray(out, dtype=np.int64)


@dataclass
class SFTState:
    """Where a run is: the next step, and one record per finished step (stored in checkpoints)."""
    step: int = 0
    history: list = field(default_factory=list)  # [{"step", "loss", "n_tokens", "seconds"}]


class SFTTrainer:
    """LoRA fine-tuning of ``backbone`` (a decoder :class:`backbones.Backbone`) on
    ``examples`` (a list of ``(prompt, answer)``), checkpointing into ``out_dir``.

    peft injects LoRA layers into ``backbone.model`` in place: give the trainer a backbone of
    its own. ``train()`` resumes from ``out_dir/checkpoint`` when one exists (with the same
    config and examples; anything else is refused).
    """

    def __init__(self, backbone, examples: Sequence[tuple[str, str]], cfg: SFTConfig, out_dir,
                 *, system_prompt: str | None = None, progress: bool = True,
                 init_adapter: str | os.PathLike | None = None):
        from peft import LoraConfig, get_peft_model

        if getattr(backbone, "kind", None) != "decoder":
            raise ValueError("SFT needs a causal LM backbone (e.g. load_backbone('smollm2-135m'))")
        if not examples:
            raise ValueError("examples is empty")
        self.cfg = cfg
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.encoded = [encode_example(self.tokenizer, p, a, cfg.max_len, system_prompt) for p, a in examples]
        self.data_fingerprint = _fingerprint(examples, system_prompt)
        torch.manual_seed(cfg.seed)  # LoRA's A matrices are drawn here: same seed, same start
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
        self.model = get_peft_model(backbone.model, lora)
        if init_adapter is not None:  # continue an earlier run's adapter (a new optimizer)
            self.data_fingerprint += "+" + _load_init_adapter(self.model, init_adapter, cfg)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.state = SFTState()
        self.resumed_from: int | None = None

    # ---------------------------------------------------------------------------- schedule
    def _lr_factor(self, step: int) -> float:
        w, total = self.cfg.warmup, self.cfg.steps
        if step < w:
            return (step + 1) / (w + 1)
        return max(0.0, (total - step) / max(1, total - w))

    @property
    def n_trainable(self) -> int:
        """How many weights fine-tuning changes (the LoRA matrices)."""
        return int(sum(p.numel() for p in self.params))

    # ---------------------------------------------------------------------------- steps
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The padded batch of ``step`` (:func:`batch_indices`), on the model's device."""
        idx = batch_indices(len(self.encoded), self.cfg.batch_size, self.cfg.seed, step)
        out = collate([self.encoded[i] for i in idx], self.backbone.pad_token_id)
        return {k: v.to(self.backbone.device) for k, v in out.items()}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of the batch.

        Only the positions from the batch's earliest answer on get logits
        (``logits_to_keep``): the prompt's positions carry no label, and projecting them onto
        the vocabulary was a large share of a step. The loss is the same number.
        """
        labels = batch["labels"][:, 1:]
        first = int((labels != IGNORE).int().argmax(dim=1).min())  # earliest scored position
        with _config.autocast(str(self.backbone.device), enabled=self.cfg.use_autocast):
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                logits_to_keep=labels.size(1) + 1 - first).logits
        logits, labels = logits[:, :-1].float(), labels[:, first:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                 ignore_index=IGNORE)

    def train(self, stop_at: int | None = None) -> "SFTTrainer":
        """Train to ``cfg.steps`` (or stop after step ``stop_at``), resuming if a checkpoint exists."""
        from tqdm.auto import tqdm

        self.resume()
        end = self.cfg.steps if stop_at is None else min(int(stop_at), self.cfg.steps)
        self.model.train()
        bar = tqdm(range(self.state.step, end), desc="LoRA SFT", unit="step", disable=not self.progress,
                   initial=self.state.step, total=self.cfg.steps)
        for step in bar:
            t0 = time.perf_counter()
            b = self.batch(step)
            loss = self.loss(b)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower lr (now {self.cfg.lr})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step = step + 1
            self.state.history.append({"step": step + 1, "loss": float(loss.item()),
                                       "n_tokens": int((b["labels"] != IGNORE).sum()),
                                       "seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if self.state.step % self.cfg.save_every == 0 or self.state.step == end:
                self.save_checkpoint()
        self.model.eval()
        return self

    # ---------------------------------------------------------------------------- saving
    def _adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.model).items()}

    def save_checkpoint(self) -> Path:
        """Write the adapter, the optimiser and the state to ``out_dir/checkpoint`` (a whole folder, renamed into place); returns it."""
        from safetensors.torch import save_file

        ckpt = self.out_dir / "checkpoint"
        tmp = self.out_dir / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(self._adapter_state(), str(tmp / "adapter.safetensors"))
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({
            "step": self.state.step, "history": self.state.history, "config": config_dict(self.cfg),
            "data": self.data_fingerprint}, indent=1))
        old = self.out_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
        return ckpt

    def resume(self) -> bool:
        """Load ``out_dir/checkpoint`` if present; True if it did."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        ckpt = self.out_dir / "checkpoint"
        if not (ckpt / "state.json").is_file():
            return False
        meta = json.loads((ckpt / "state.json").read_text())
        if meta["config"] != config_dict(self.cfg) or meta["data"] != self.data_fingerprint:
            raise ValueError(f"{ckpt} was written with another config or other examples; delete "
                             f"{self.out_dir} to start over, or pass the same config and data")
        set_peft_model_state_dict(self.model, load_file(str(ckpt / "adapter.safetensors")))
        opt = torch.load(ckpt / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(opt["optimizer"])
        self.scheduler.load_state_dict(opt["scheduler"])
        self.state = SFTState(step=int(meta["step"]), history=list(meta["history"]))
        self.resumed_from = self.state.step
        return True

    def save_adapter(self, path, meta: dict | None = None, dtype: torch.dtype = torch.bfloat16) -> Path:
        """The adapter as peft writes it (loadable by :class:`generation.LocalGenerator`), its
        tensors cast to ``dtype``, plus ``sft.json`` (config, loss history, ``meta``)."""
        from safetensors.torch import load_file, save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path), safe_serialization=True)
        (path / "README.md").unlink(missing_ok=True)  # peft's empty model card
        conf = path / "adapter_config.json"  # the base by name, not by this machine's path
        c = json.loads(conf.read_text())
        c["base_model_name_or_path"] = self.backbone.name
        conf.write_text(json.dumps(c, indent=2, sort_keys=True) + "\n")
        f = path / "adapter_model.safetensors"
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(str(f)).items()}
        save_file(state, str(f), metadata={"format": "pt"})
        (path / "sft.json").write_text(json.dumps({
            "config": config_dict(self.cfg), "steps_done": self.state.step, "n_examples": len(self.encoded),
            "n_trainable": self.n_trainable, "data": self.data_fingerprint, "history": self.state.history,
            "meta": meta or {}}, indent=1, default=float))
        return path


def _load_init_adapter(model, folder, cfg: SFTConfig) -> str:
    """Load a saved adapter's weights into ``model`` (a fresh peft model of the same LoRA
    shape); returns a fingerprint of those weights, so a resumed run can tell starts apart."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    f, conf = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    if not (f.is_file() and conf.is_file()):
        raise FileNotFoundError(f"{folder} holds no adapter (adapter_model.safetensors and "
                                "adapter_config.json); pass a folder written by save_adapter")
    c = json.loads(conf.read_text())
    if c.get("r") != cfg.lora_r or sorted(c.get("target_modules") or []) != sorted(cfg.target_modules):
        raise ValueError(f"{folder} has LoRA r={c.get('r')} on {c.get('target_modules')}; this run asks "
                         f"r={cfg.lora_r} on {list(cfg.target_modules)}: set the SFTConfig to match")
    state = load_file(str(f))
    result = set_peft_model_state_dict(model, state)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"{folder} does not fit this model: {len(missing)} LoRA weights missing, "
                         f"e.g. {missing[0]}")
    return adapter_fingerprint(folder)


def adapter_fingerprint(folder) -> str:
    """A hash of a saved adapter's tensors (names and values).

    Args:
        folder: a folder holding ``adapter_model.safetensors``.

    Returns:
        16 hex digits.
    """
    import hashlib

    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / "adapter_model.safetensors"))
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].float().numpy().tobytes())
    return h.hexdigest()[:16]


def run_dir_for(work, cfg: SFTConfig, examples: Sequence[tuple[str, str]], start: str = "") -> Path:
    """One checkpoint folder per (config, examples, starting adapter) under ``work``: a rerun
    with the same settings resumes, a run with other settings starts its own.

    Args:
        work: the parent folder.
        cfg: the run's settings.
        examples: the training (prompt, answer) pairs.
        start: a fingerprint of the starting adapter ("" for none).

    Returns:
        The run's folder.
    """
    import hashlib

    def sha(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()[:16]

    key = json.dumps(config_dict(cfg), sort_keys=True) + sha("".join(p + a for p, a in examples))
    return Path(work) / sha(key + (f"+{start}" if start else ""))


def fit(backbone_name: str, train: Sequence[tuple[str, str]], held_out: Sequence[tuple[str, str]],
        cfg: SFTConfig, work, adapter_out, *, command: str = "", init_adapter=None,
        progress: bool = True) -> dict:
    """The fine-tuning step every full-mode LLM run shares: answer loss of the starting model
    on ``held_out``, resumable LoRA SFT on ``train`` (checkpoints in :func:`run_dir_for`
    under ``work``), answer loss after, and the adapter saved to ``adapter_out``.

    Args:
        backbone_name: the base model (:func:`backbones.load_backbone`'s name).
        train: the training (prompt, answer) pairs.
        held_out: (prompt, answer) pairs measured before and after.
        cfg: the run's settings.
        work: the folder checkpoints go under.
        adapter_out: where the trained adapter is saved.
        command: the command that reproduces the run, stored with the adapter.
        init_adapter: a folder whose adapter is continued instead of starting LoRA at zero;
            the "base" loss is then the starting adapter's.
        progress: show a progress bar.

    Returns:
        {"val_loss_base", "val_loss_tuned", "seconds", "n_train", "n_held_out"}.
    """
    from llmrec_lib import backbones

    t = time.perf_counter()
    bb = backbones.load_backbone(backbone_name)
    base = None if init_adapter else answer_loss(bb, bb.tokenizer, list(held_out), max_len=cfg.max_len)
    start = adapter_fingerprint(init_adapter) if init_adapter else ""
    trainer = SFTTrainer(bb, list(train), cfg, run_dir_for(work, cfg, train, start), progress=progress,
                         init_adapter=init_adapter)
    if base is None:
        base = answer_loss(trainer.model, bb.tokenizer, list(held_out), max_len=cfg.max_len)
    print(f"held-out answer loss before: {base:.3f}", flush=True)
    trainer.train()
    tuned = answer_loss(trainer.model, bb.tokenizer, list(held_out), max_len=cfg.max_len)
    print(f"held-out answer loss after: {tuned:.3f}", flush=True)
    trainer.save_adapter(adapter_out, meta={"command": command, "val_loss_base": base, "val_loss_tuned": tuned})
    return {"val_loss_base": base, "val_loss_tuned": tuned, "seconds": time.perf_counter() - t,
            "n_train": len(train), "n_held_out": len(held_out)}


def config_dict(cfg: SFTConfig) -> dict:
    """``cfg`` as a JSON-ready dict (what checkpoints and adapters store, and compare).

    Args:
        cfg: the run's settings.

    Returns:
        A dict of plain values.
    """
    d = asdict(cfg)
    d["target_modules"] = list(d["target_modules"])
    return d


def _fingerprint(examples, system_prompt) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(json.dumps(system_prompt).encode())
    for p, a in examples:
        h.update(json.dumps([p, a]).encode())
    return h.hexdigest()[:16]


def answer_loss(backbone_or_model, tokenizer, examples: Sequence[tuple[str, str]], *, batch_size: int = 8,
                max_len: int = 512, use_autocast: bool = True) -> float:
    """Mean answer-token cross-entropy of a model (with or without adapter) on ``examples``:
    the held-out number that says whether fine-tuning taught the task.

    Args:
        backbone_or_model: a :class:`backbones.Backbone` or a (peft) model.
        tokenizer: its tokenizer.
        examples: (prompt, answer) pairs.
        batch_size: examples per forward pass.
        max_len: the longest example, in tokens.
        use_autocast: bf16 autocast where the device supports it.

    Returns:
        The mean loss over every answer token.
    """
    model = getattr(backbone_or_model, "model", backbone_or_model)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    enc = [encode_example(tokenizer, p, a, max_len) for p, a in examples]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(enc), batch_size):
            b = {k: v.to(device) for k, v in collate(enc[s : s + batch_size], pad).items()}
            with _config.autocast(str(device), enabled=use_autocast):
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            logits = logits[:, :-1].float()
            labels = b["labels"][:, 1:]
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                   ignore_index=IGNORE, reduction="sum")
            total += float(ce)
            count += int((labels != IGNORE).sum())
    return total / max(count, 1)
