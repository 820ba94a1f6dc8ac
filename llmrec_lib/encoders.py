"""Turn texts into vectors with a backbone: pooling and fast batched encoding.

LinkedIn's retrieval model mean-pools the token states of a causal LLM and compares the
pooled vectors by cosine similarity; this module does exactly that (and the last-token
alternative the paper ablates), for any :class:`~llmrec_lib.backbones.Backbone`.

Speed matters even for a pocket-sized catalogue: padding every batch to its longest text
wastes compute on pad tokens, so :func:`embed_texts` sorts texts by token length first
(length bucketing) and pads each batch only to its own longest member.

:class:`DualEncoder` is the trainable version (chapter 03): one shared LLM for users and items
with LoRA adapters, saved and loaded as safetensors. peft injects the adapters into the
backbone in place, so :func:`embed_texts` and the cached encoders of :mod:`baselines` run
through them too (their cache key hashes the weights, adapters included).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec_lib import config

POOLINGS = ("mean", "last")


def _check_pool_inputs(hidden: torch.Tensor, attention_mask: torch.Tensor) -> None:
    if hidden.ndim != 3:
        raise ValueError(f"hidden must be (batch, seq, dim), got shape {tuple(hidden.shape)}")
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match hidden's "
            f"(batch, seq) = {tuple(hidden.shape[:2])}"
        )
    empty = (attention_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"rows {empty[:10]} have no attended tokens (empty text?): there is nothing to pool. "
            "Drop empty texts or give them some content."
        )


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mask-weighted mean over tokens: ``(B, T, D), (B, T) -> (B, D)``.

    Uses the attention mask, never ``input_ids != pad_id``: SmolLM2 pads with its EOS token,
    so an id test would also drop every real EOS in the text (and keep nothing on some rows).
    """
    _check_pool_inputs(hidden, attention_mask)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    summed = (hidden * mask).sum(dim=1)  # (B, D)
    counts = mask.sum(dim=1)  # (B, 1), >= 1 after the check above
    return summed / counts


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state of each row's last attended token: ``(B, T, D), (B, T) -> (B, D)``.

    Finds the position of the last 1 in the mask, so it is right for right padding (the
    book's default) and for left padding alike. For a causal decoder that token has seen the
    whole text; LinkedIn found mean pooling better by about 12% Recall@10.
    """
    _check_pool_inputs(hidden, attention_mask)
    positions = torch.arange(hidden.shape[1], device=hidden.device)  # (T,)
    last = (attention_mask.to(torch.long) * positions).argmax(dim=1)  # (B,) index of last 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, D)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Dispatch to :func:`mean_pool` or :func:`last_token_pool`."""
    if pooling == "mean":
        return mean_pool(hidden, attention_mask)
    if pooling == "last":
        return last_token_pool(hidden, attention_mask)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def prefix_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                ends: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pooled states of prompt prefixes, many per row: ``(B, T, D) -> (P, D)``.

    Pair p pools tokens ``[0, ends[p])`` of row ``rows[p]``. In a causal decoder token t
    attends only to tokens <= t, so the states of a prefix are the same whether or not more
    text follows: the mean over the first L states of a long prompt *is* the embedding of the
    L-token prompt. One forward of a member's history therefore gives the member's embedding
    at every item boundary (every-position training). Not valid for bidirectional encoders.
    """
    _check_pool_inputs(hidden, attention_mask)
    rows, ends = torch.as_tensor(rows).long(), torch.as_tensor(ends).long()
    lengths = attention_mask.sum(dim=1)
    if rows.shape != ends.shape or (ends < 1).any() or (ends > lengths[rows]).any():
        raise ValueError("each prefix needs 1 <= end <= its row's attended length")
    if pooling == "last":
        return hidden[rows, ends - 1]
    if pooling != "mean":
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    csum = (hidden * attention_mask.to(hidden.dtype).unsqueeze(-1)).cumsum(dim=1)  # (B, T, D)
    return csum[rows, ends - 1] / ends.to(hidden.dtype).unsqueeze(-1)


def batch_order(lengths: np.ndarray, batch_size: int, bucket: bool = True) -> list[np.ndarray]:
    """Index batches: longest-first by token length when ``bucket`` (ties by position, so the
    order is deterministic), else the texts' own order.

    Longest first also means a batch that runs out of memory fails at once, not at the end.
    """
    n = len(lengths)
    order = np.lexsort((np.arange(n), -np.asarray(lengths))) if bucket else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@torch.inference_mode()
def embed_texts(
    backbone,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = 128,
    pooling: str = "mean",
    normalize: bool = True,
    bucket: bool = True,
    progress: bool = True,
    use_autocast: bool = True,
) -> np.ndarray:
    """Encode ``texts`` into an ``(n, hidden_size)`` float32 array, in the input order.

    Args:
        backbone: a :class:`~llmrec_lib.backbones.Backbone`.
        texts: strings; none may be empty.
        batch_size: texts per forward pass.
        max_length: texts longer than this many tokens are truncated (from the right). Build
            prompts within the budget with :mod:`llmrec_lib.text` so nothing is cut here.
        pooling: ``"mean"`` (LinkedIn's choice) or ``"last"``.
        normalize: L2-normalise, so a dot product is the cosine similarity.
        bucket: sort by token length and pad each batch only to its longest text;
            ``False`` keeps the given order (the naive baseline in the benchmark).
        progress: show a tqdm bar over batches.
        use_autocast: run under bf16 autocast (3-7x faster on the project's CPUs); pooling
            and normalisation are done in float32.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    texts = list(texts)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"texts at positions {bad[:10]} are empty or not strings: nothing to encode")
    if not texts:
        return np.zeros((0, backbone.hidden_size), dtype=np.float32)

    tokenizer = backbone.tokenizer
    ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length,
                    verbose=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    pad_id = backbone.pad_token_id
    device = backbone.device
    out = np.empty((len(texts), backbone.hidden_size), dtype=np.float32)

    from tqdm.auto import tqdm

    batches = batch_order(lengths, batch_size, bucket)
    for idx in tqdm(batches, desc=f"embed {backbone.name}", disable=not progress, leave=False):
        width = int(lengths[idx].max())
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)  # (B, T) right-padded
        attention_mask = torch.zeros((len(idx), width), dtype=torch.long)  # (B, T)
        for row, i in enumerate(idx):
            input_ids[row, : lengths[i]] = torch.tensor(ids[i])
            attention_mask[row, : lengths[i]] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with config.autocast(device.type, enabled=use_autocast):
            hidden = backbone.hidden_states(input_ids, attention_mask)  # (B, T, D)
        vectors = pool(hidden.float(), attention_mask, pooling)  # (B, D)
        if normalize:
            vectors = F.normalize(vectors, dim=-1)
        out[idx] = vectors.cpu().numpy()
    return out


def cosine_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities between rows of ``a`` and rows of ``b`` (default ``a``)."""
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = an if b is a else b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def backbone_fingerprint(backbone) -> str:
    """A short hash of a backbone's weights, so a cache never serves vectors of a model that
    has since been fine-tuned or truncated (name, layers and per-tensor sums are hashed)."""
    h = hashlib.sha256()
    h.update(f"{backbone.name}|{backbone.n_layers}|{backbone.hidden_size}".encode())
    with torch.no_grad():
        for name, p in backbone.model.named_parameters():
            flat = p.detach().reshape(-1)
            h.update(name.encode())
            h.update(np.float64(flat.double().sum().item()).tobytes())
            h.update(flat[:8].double().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def embed_cached(
    backbone,
    texts: Sequence[str],
    *,
    cache: bool = True,
    tag: str = "",
    **embed_kwargs,
) -> np.ndarray:
    """:func:`embed_texts` with an on-disk cache under ``config.cache_dir("embeddings")``.

    The key hashes the backbone (:func:`backbone_fingerprint`), the encoding arguments and the
    texts themselves, so a changed text, model or pooling gives a new entry instead of stale
    vectors. Writes are atomic (temporary file then rename).
    """
    texts = list(texts)
    if not cache:
        return embed_texts(backbone, texts, **embed_kwargs)
    h = hashlib.sha256()
    h.update(backbone_fingerprint(backbone).encode())
    h.update(json.dumps({k: embed_kwargs[k] for k in sorted(embed_kwargs) if k != "progress"},
                        default=str).encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\x1e")
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone.name)[-40:]
    path = config.cache_dir("embeddings") / f"{safe_name}{'-' + tag if tag else ''}-{h.hexdigest()[:24]}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape == (len(texts), backbone.hidden_size):
            return vectors
    vectors = embed_texts(backbone, texts, **embed_kwargs)
    fd, tmp = tempfile.mkstemp(suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return vectors


# --------------------------------------------------------------------------------------------
# The LinkedIn-style dual encoder: one shared LLM for users and items
# --------------------------------------------------------------------------------------------

# LoRA targets by architecture: attention projections (LinkedIn fine-tunes the whole LLM; LoRA
# on q, k, v, o is the pocket-scale stand-in, about 0.3% of SmolLM2's weights at r=8).
LORA_TARGETS = {
    "decoder": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "encoder": ("query", "key", "value", "dense"),
}


@dataclass
class EncoderConfig:
    """What defines a dual encoder; saved beside its adapter so a reload rebuilds the same model."""

    backbone: str = "smollm2-135m"
    n_layers: int | None = 8
    pooling: str = "mean"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None  # None: LORA_TARGETS[kind]
    full_finetune: bool = False
    gradient_checkpointing: bool = False
    user_max_tokens: int = 128
    item_max_tokens: int = 32

    def to_dict(self) -> dict:
        out = asdict(self)
        out["lora_targets"] = list(self.lora_targets) if self.lora_targets else None
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown encoder settings {sorted(unknown)}: was this adapter saved by a newer version?")
        d = dict(d)
        if d.get("lora_targets") is not None:
            d["lora_targets"] = tuple(d["lora_targets"])
        return cls(**d)


class DualEncoder(nn.Module):
    """One LLM encodes both sides: ``encode(texts) -> (B, d)`` L2-normalised vectors.

    The backbone's weights stay frozen; LoRA adapters (peft) on the attention projections are
    trained, unless ``full_finetune``. Users and items share every weight, as in LinkedIn's
    design: the model learns one space in which "this member" sits near "posts they engage with".
    """

    def __init__(self, cfg: EncoderConfig, backbone=None, device: str | None = None):
        super().__init__()
        from llmrec_lib import backbones, text

        if cfg.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {cfg.pooling!r}")
        self.cfg = cfg
        self.backbone = backbone or backbones.load_backbone(cfg.backbone, n_layers=cfg.n_layers, device=device)
        self.tokenizer = self.backbone.tokenizer
        # The marker tokens are new rows of the (frozen) embedding matrix. Start each from the
        # words it stands for, so a reload rebuilds exactly the same rows without saving them.
        text.init_marker_embeddings(self.backbone)
        body = self.backbone.body
        if cfg.gradient_checkpointing and hasattr(self.backbone.model, "gradient_checkpointing_enable"):
            self.backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.backbone.model.config.use_cache = False
        if cfg.full_finetune:
            self.body = body
        else:
            from peft import LoraConfig, get_peft_model

            for p in body.parameters():
                p.requires_grad_(False)
            targets = list(cfg.lora_targets or LORA_TARGETS[self.backbone.kind])
            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=targets, bias="none")
            # peft injects the LoRA layers into `body` in place, so backbone.hidden_states (and
            # embed_texts) run through the adapters too
            self.body = get_peft_model(body, lora)
        if not cfg.full_finetune:
            self.backbone.model.get_input_embeddings().weight.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.body.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.body.parameters() if p.requires_grad]

    def tokenize(self, texts: Sequence[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` and ``attention_mask`` (B, T), T <= ``max_tokens``."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"].to(self.device),
                "attention_mask": batch["attention_mask"].to(self.device)}

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, D) pooled, L2-normalised vectors (with gradients)."""
        hidden = self.backbone.hidden_states(input_ids, attention_mask)  # (B, T, D)
        return F.normalize(pool(hidden.float(), attention_mask, self.cfg.pooling), dim=-1)

    def forward(self, users: dict, items: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers in one call (one forward per step, as DDP expects): (B_u, D), (B_i, D)."""
        return self.embed(**users), self.embed(**items)

    def embed_prefixes(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       rows: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """One forward, many prefix embeddings (:func:`prefix_pool`): (P, D), normalised."""
        if self.backbone.kind != "decoder":
            raise ValueError("prefix embeddings need a causal decoder; "
                             f"{self.backbone.name} attends both ways")
        hidden = self.backbone.hidden_states(input_ids, attention_mask)  # (B, T, D)
        pooled = prefix_pool(hidden.float(), attention_mask, rows, ends, self.cfg.pooling)
        return F.normalize(pooled, dim=-1)

    def encode(self, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
        return self.embed(**self.tokenize(texts, max_tokens))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], max_tokens: int, batch_size: int = 64,
                     progress: bool = True) -> np.ndarray:
        """Inference: length-bucketed batches (:func:`embed_texts`) through the adapted model."""
        was_training = self.training
        self.eval()
        try:
            return embed_texts(self.backbone, texts, batch_size=batch_size, max_length=max_tokens,
                               pooling=self.cfg.pooling, progress=progress)
        finally:
            self.train(was_training)

    # ---- adapters ---------------------------------------------------------------------------
    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The trained weights only: LoRA matrices (or, with ``full_finetune``, everything)."""
        if self.cfg.full_finetune:
            return {k: v.detach() for k, v in self.body.state_dict().items()}
        from peft import get_peft_model_state_dict

        # save_embedding_layers=False: the marker rows are rebuilt from words (not trained), so
        # the 28M-weight embedding matrix never needs to travel with a 0.5 MB adapter
        state = get_peft_model_state_dict(self.body, save_embedding_layers=False)
        return {k: v.detach() for k, v in state.items()}

    def save_adapter(self, path: str | Path, dtype: torch.dtype = torch.bfloat16, meta: dict | None = None) -> Path:
        """``path/adapter.safetensors`` + ``path/encoder.json`` (the config that rebuilds it)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.to(dtype).contiguous().cpu() for k, v in self.adapter_state().items()}
        save_file(state, str(path / "adapter.safetensors"))
        info = {"encoder": self.cfg.to_dict(), "meta": meta or {},
                "n_tensors": len(state), "n_params": int(sum(v.numel() for v in state.values()))}
        (path / "encoder.json").write_text(json.dumps(info, indent=1))
        return path

    def load_adapter(self, path: str | Path) -> "DualEncoder":
        """Load weights saved by :meth:`save_adapter` into this model (configs must agree)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "adapter.safetensors").is_file():
            raise FileNotFoundError(f"no adapter at {path}: expected adapter.safetensors and encoder.json")
        saved = EncoderConfig.from_dict(json.loads((path / "encoder.json").read_text())["encoder"])
        if saved != self.cfg:
            diff = {k: (v, getattr(self.cfg, k)) for k, v in asdict(saved).items() if getattr(self.cfg, k) != v}
            raise ValueError(f"adapter at {path} was trained with other settings (saved, current): {diff}")
        state = load_file(str(path / "adapter.safetensors"))
        mine = self.adapter_state()
        if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
            raise ValueError(f"adapter at {path} does not fit this model's LoRA layout")
        if self.cfg.full_finetune:
            self.body.load_state_dict({k: v.float() for k, v in state.items()})
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.body, {k: v.float() for k, v in state.items()})
        return self

    @classmethod
    def from_adapter(cls, path: str | Path, device: str | None = None) -> "DualEncoder":
        """Rebuild the model an adapter was trained with, then load the adapter."""
        cfg = EncoderConfig.from_dict(json.loads((Path(path) / "encoder.json").read_text())["encoder"])
        return cls(cfg, device=device).load_adapter(path)

