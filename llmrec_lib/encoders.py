"""Turn texts into vectors with a backbone: pooling and fast batched encoding.

LinkedIn's retrieval model mean-pools the token states of a causal LLM and compares the
pooled vectors by cosine similarity; this module does exactly that (and the last-token
alternative the paper ablates), for any :class:`~llmrec_lib.backbones.Backbone`.

Speed matters even for a pocket-sized catalogue: padding every batch to its longest text
wastes compute on pad tokens, so :func:`embed_texts` sorts texts by token length first
(length bucketing) and pads each batch only to its own longest member.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

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
