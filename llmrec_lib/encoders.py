"""Turn texts into vectors with a backbone: pooling and fast batched encoding.

LinkedIn's retrieval model mean-pools the token states of a causal LLM and compares the
pooled vectors by cosine similarity; this module does exactly that (and the last-token
alternative the paper ablates), for any :class:`~llmrec_lib.backbones.Backbone`.

Speed matters even for a pocket-sized catalogue: padding every batch to its longest text
wastes compute on pad tokens, so :func:`embed_texts` sorts texts by token length first
(length bucketing) and pads each batch only to its own longest member.

:class:`DualEncoder` is the trainable version (chapter 03): one shared LLM for users and items
with LoRA adapters, saved and loaded as safetensors. peft injects the adapters into the
backbone in place, so :func:`embed_texts` and the cached :func:`embed_cached` run through
them too (the cache key hashes the weights, adapters included).

The encoder as a recommender lives here too, zero-shot (chapter 02) or trained (chapters
03-05 and 09, through ``recipes.dual_encoder_system``): :func:`item_text_embeddings` embeds
the catalogue, :func:`prompt_user_encoder` a user's history prompt, :class:`PromptRetrieval`
and :class:`ItemMeanRetrieval` are evaluable systems with the baselines' two-step life
(:class:`llmrec_lib.baselines.Baseline`), and :class:`VectorRecommender` serves any of them
through a vector index.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from llmrec_lib import config, data
from llmrec_lib.baselines import Baseline, BoundSystem, Histories, check_catalogue

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

    Args:
        hidden: (B, T, D) token states.
        attention_mask: (B, T), 1 on real tokens; every row needs one.

    Returns:
        (B, D) means.
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

    Args:
        hidden: (B, T, D) token states.
        attention_mask: (B, T), 1 on real tokens; every row needs one.

    Returns:
        (B, D) states.
    """
    _check_pool_inputs(hidden, attention_mask)
    positions = torch.arange(hidden.shape[1], device=hidden.device)  # (T,)
    last = (attention_mask.to(torch.long) * positions).argmax(dim=1)  # (B,) index of last 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, D)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Dispatch to :func:`mean_pool` or :func:`last_token_pool`.

    Args:
        hidden: (B, T, D) token states.
        attention_mask: (B, T), 1 on real tokens.
        pooling: "mean" or "last".

    Returns:
        (B, D) pooled states.
    """
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

    Args:
        hidden: (B, T, D) token states.
        attention_mask: (B, T), 1 on real tokens.
        rows: (P,) the row of each prefix.
        ends: (P,) each prefix's length in tokens, 1..the row's length.
        pooling: "mean" or "last".

    Returns:
        (P, D) pooled states.
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

    Args:
        lengths: each text's token length.
        batch_size: texts per batch.
        bucket: longest first (True) or the given order.

    Returns:
        The batches, as arrays of text indices.
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
        use_autocast: run under bf16 autocast where the hardware has bf16 instructions
            (:func:`llmrec_lib.config.bf16_is_fast`; 3-7x faster on the project's CPUs, float32
            elsewhere); pooling and normalisation are done in float32.

    Returns:
        The ``(n, hidden_size)`` float32 vectors, row i for ``texts[i]``.
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
    """Cosine similarities between rows of ``a`` and rows of ``b`` (default ``a``).

    Args:
        a: (n, d) vectors.
        b: (m, d) vectors (default: ``a``).

    Returns:
        The (n, m) float32 similarities.
    """
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = an if b is a else b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def backbone_fingerprint(backbone) -> str:
    """A short hash of a backbone's weights, so a cache never serves vectors of a model that
    has since been fine-tuned or truncated (name, layers and per-tensor sums are hashed).

    Args:
        backbone: the loaded backbone.

    Returns:
        A hex digest.
    """
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

    Two layers, both keyed by the backbone (:func:`backbone_fingerprint`) and the encoding
    arguments, so a changed model or pooling gives new entries instead of stale vectors:

    * the whole list: one ``.npy`` per list of texts (the key hashes the texts too), read back
      as it was written;
    * text by text: one ``-bytext-`` store per model and arguments, which maps each text's hash
      to its vector. A list that is not cached whole encodes only the texts the store lacks:
      the catalogue of a derived data set, or a catalogue with a few edited titles, reuses
      every unchanged item. A text's vector does not depend on the other texts of its batch
      (right padding, masked pooling), up to float rounding in the last digits.

    Writes are atomic (temporary file then rename); a store that cannot be read is rebuilt.
    When two processes extend one store at once the last write wins, and the other's new rows
    are simply encoded again the next time they are needed.

    Args:
        backbone: the loaded backbone.
        texts: the texts to encode.
        cache: read and write the cache (False: always encode).
        tag: a label in the cache files' names, to tell entries apart by eye.
        **embed_kwargs: passed to :func:`embed_texts` (and part of the key, progress aside).

    Returns:
        The vectors, as :func:`embed_texts` returns them.
    """
    texts = list(texts)
    if not cache:
        return embed_texts(backbone, texts, **embed_kwargs)
    model_key = hashlib.sha256()
    model_key.update(backbone_fingerprint(backbone).encode())
    model_key.update(json.dumps({k: embed_kwargs[k] for k in sorted(embed_kwargs) if k != "progress"},
                                default=str).encode())
    h = model_key.copy()
    for t in texts:
        h.update(t.encode())
        h.update(b"\x1e")
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in backbone.name)[-40:]
    stem = f"{safe_name}{'-' + tag if tag else ''}"
    folder = config.cache_dir("embeddings")
    path = folder / f"{stem}-{h.hexdigest()[:24]}.npy"
    shape = (len(texts), backbone.hidden_size)
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape == shape:
            _log(path.name, len(texts), "cache")
            return vectors
    committed = read_committed(path.name, backbone, texts, embed_kwargs)
    if committed is not None:
        _write_atomic(path, lambda f: np.save(f, committed))
        return committed
    store = folder / f"{stem}-bytext-{model_key.hexdigest()[:24]}.npz"
    keys = np.array([hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in texts],
                    dtype="S32")
    known_keys, known = _read_text_store(store, backbone.hidden_size)
    row = {k: i for i, k in enumerate(known_keys.tolist())}
    found = np.fromiter((row.get(k, -1) for k in keys.tolist()), dtype=np.int64, count=len(texts))
    missing = np.flatnonzero(found < 0)
    vectors = np.empty(shape, dtype=np.float32)
    vectors[found >= 0] = known[found[found >= 0]]
    if len(missing):
        vectors[missing] = embed_texts(backbone, [texts[i] for i in missing], **embed_kwargs)
        new_keys, first = np.unique(keys[missing], return_index=True)
        _write_atomic(store, lambda f: np.savez(
            f, keys=np.concatenate([known_keys, new_keys]),
            vectors=np.concatenate([known, vectors[missing[first]]])))
    _write_atomic(path, lambda f: np.save(f, vectors))
    _log(path.name, len(texts), "encoded" if len(missing) else "cache")
    return vectors


COMMITTED_VECTORS_ENV = "LLMREC_COMMITTED_VECTORS"  # "1" / "0" overrides the quick-mode rule
COMMITTED_CHECK_TEXTS = 32  # texts re-encoded live to check each committed file
#: float16 storage alone keeps about 1 - 1e-7, but the live check runs in this machine's
#: arithmetic: vectors made in float32 on an AVX2 CPU, re-encoded under bf16 autocast on a
#: CPU with AMX, agreed to 0.9987 at worst (32 rows, 2026-12-06), which 0.999 refused. A row
#: swapped or damaged points elsewhere by far more than 0.01.
COMMITTED_MIN_COSINE = 0.99
_embedding_log: list[dict] = []


def committed_vectors_dir() -> Path:
    """``artifacts/vectors/``: float16 copies of the embedding cache's whole-list entries that
    the quick chapters need, so a clean clone need not spend half an hour on two CPU cores
    encoding the catalogue with each committed adapter (``artifacts/vectors/README.md``).

    Returns:
        The folder's path (it need not exist).
    """
    return config.artifacts_dir("vectors")


def committed_vectors_on() -> bool:
    """Whether :func:`embed_cached` may read committed vectors: in quick mode, unless
    ``LLMREC_COMMITTED_VECTORS=0``; ``=1`` allows them in full mode too.

    Returns:
        True or False (ValueError for another value of the variable).
    """
    forced = os.environ.get(COMMITTED_VECTORS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"{COMMITTED_VECTORS_ENV}={forced!r}: set it to 1 (read "
                         "artifacts/vectors/) or 0 (always encode)")
    return config.get_mode() == "quick"


def read_committed(name: str, backbone, texts: Sequence[str], embed_kwargs: dict):
    """The committed vectors for the cache entry ``name``, checked against the model.

    :data:`COMMITTED_CHECK_TEXTS` sampled texts are encoded live; if one of them points
    elsewhere than its committed row (cosine under :data:`COMMITTED_MIN_COSINE`), the file
    is refused with an error that says how to regenerate it. The key already hashes the
    weights and texts, so this guards against a damaged or hand-edited file. Every read is
    recorded (:func:`embedding_log`).

    Args:
        name: the whole-list cache file's name (``stem-key.npy``).
        backbone: the loaded backbone (adapters included).
        texts: the texts, in the file's row order.
        embed_kwargs: the arguments of :func:`embed_texts`.

    Returns:
        float32 vectors, or None when there is no such file or committed vectors are off.
    """
    file = committed_vectors_dir() / name
    if not committed_vectors_on() or not file.is_file():
        return None
    vectors = np.load(file).astype(np.float32)
    if vectors.shape != (len(texts), backbone.hidden_size):
        raise ValueError(f"{file} holds {vectors.shape}, not ({len(texts)}, "
                         f"{backbone.hidden_size}): regenerate it (artifacts/vectors/README.md)")
    if embed_kwargs.get("normalize", True):
        vectors = _normalise(vectors)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(texts), min(COMMITTED_CHECK_TEXTS, len(texts)), replace=False))
    live = embed_texts(backbone, [texts[i] for i in rows], **{**embed_kwargs, "progress": False})
    cosine = np.sum(_normalise(live) * _normalise(vectors[rows]), axis=1)
    if cosine.min() < COMMITTED_MIN_COSINE:
        raise ValueError(
            f"{file} disagrees with this model (a live re-encoding of {len(rows)} texts has "
            f"cosine {cosine.min():.4f} with its rows): regenerate it as "
            f"artifacts/vectors/README.md says, or set {COMMITTED_VECTORS_ENV}=0 to encode")
    _log(name, len(texts), "committed", checked=len(rows), min_cosine=float(cosine.min()))
    return vectors


def encoded_nothing(prefix: str = "") -> tuple[bool, str]:
    """Whether this process encoded no list so far (every :func:`embed_cached` call was served
    by this machine's cache or by ``artifacts/vectors/``), and a count by source: the check a
    quick chapter makes that its committed vectors are current.

    Args:
        prefix: count only the lists whose cache file starts with it (``"smollm2"``); "" all.

    Returns:
        (holds, detail), as :meth:`llmrec_lib.config.Claims.check_committed` takes them.
    """
    log = embedding_log()
    log = log[log["file"].str.startswith(prefix)]
    counts = ", ".join(f"{n} from {s}" for s, n in log["source"].value_counts().items())
    return bool(len(log)) and not (log["source"] == "encoded").any(), counts or "no lists"


ENCODED_NOTHING = ("quick mode encoded no list: each came from artifacts/vectors/ (checked) "
                   "or this machine's cache")


def check_encoded_nothing(claims, mode: str, prefix: str = "", claim: str = ENCODED_NOTHING):
    """A quick chapter's closing mechanic: it encoded no list (:func:`encoded_nothing`), so its
    committed vectors are current. Checked in quick mode where the committed artifacts fit the
    data (:meth:`llmrec_lib.config.Claims.check_committed`); full mode encodes by design.

    Args:
        claims: the chapter's :class:`llmrec_lib.config.Claims`.
        mode: the run mode.
        prefix: count only the lists whose cache file starts with it ("" all).
        claim: the claim's text.

    Returns:
        What ``check_committed`` returns; None in full mode.
    """
    if mode != "quick":
        return None
    return claims.check_committed(claim, lambda: encoded_nothing(prefix),
                                  "the committed vectors are the reference data's", pinned=False)


def _log(file: str, rows: int, source: str, checked: int = 0, min_cosine: float = np.nan):
    _embedding_log.append({"file": file, "rows": rows, "source": source, "checked": checked,
                           "min cosine": min_cosine})


def embedding_log() -> pd.DataFrame:
    """Where each list :func:`embed_cached` returned in this process came from, one row per
    call: the cache file's name, its rows, and its source: ``"cache"`` (this machine's cache),
    ``"committed"`` (``artifacts/vectors/``, with the texts re-encoded live to check it and
    their lowest cosine) or ``"encoded"`` (at least one text encoded now).

    Returns:
        A DataFrame: file, rows, source, checked, min cosine.
    """
    return pd.DataFrame(_embedding_log,
                        columns=["file", "rows", "source", "checked", "min cosine"])


def _read_text_store(store: Path, hidden_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The (keys, vectors) of a ``-bytext-`` store; empty when it is absent or unreadable."""
    empty = np.zeros(0, dtype="S32"), np.zeros((0, hidden_size), dtype=np.float32)
    if not store.is_file():
        return empty
    try:
        with np.load(store) as z:
            keys, vectors = z["keys"], z["vectors"]
    except (OSError, ValueError, KeyError, EOFError):  # a damaged file: rebuilt by the next write
        return empty
    if keys.dtype != np.dtype("S32") or vectors.shape != (len(keys), hidden_size):
        return empty
    return keys, vectors.astype(np.float32, copy=False)


def _write_atomic(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary sibling of ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    # how the prompts are written (llmrec_lib.text.item_texts): the fields of an item inside a
    # member's history, and an item's popularity as a bucket token or as its raw count
    history_fields: tuple[str, ...] = ("title", "genres")
    pop_format: str = "bucket"

    def to_dict(self) -> dict:
        """The config as JSON-ready values, saved next to an adapter."""
        return config.json_ready(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        """The config an adapter was saved with; a setting this version does not know raises."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown encoder settings {sorted(unknown)}: was this adapter saved by a newer version?")
        d = dict(d)
        for key in ("lora_targets", "history_fields"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
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
        """The device of the encoder's weights (inputs are moved there)."""
        return next(self.body.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters that train (the LoRA weights; all with full fine-tuning): what the
        optimiser gets.
        """
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
        rows, ends = rows.to(hidden.device), ends.to(hidden.device)  # index tensors come from the CPU
        pooled = prefix_pool(hidden.float(), attention_mask, rows, ends, self.cfg.pooling)
        return F.normalize(pooled, dim=-1)

    def encode(self, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
        """Tokenise ``texts`` (at most ``max_tokens`` each) and return their pooled, normalised
        embeddings.
        """
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


# --------------------------------------------------------------------------------------
# Text retrieval: the encoder as a recommender (zero-shot in chapter 02, trained from 03 on)
# --------------------------------------------------------------------------------------


def item_text_embeddings(
    backbone,
    item_texts: pd.Series | Mapping[int, str],
    item_ids,
    *,
    max_length: int = 64,
    batch_size: int = 64,
    cache: bool = True,
    progress: bool = True,
    pooling: str = "mean",
) -> np.ndarray:
    """(n_items, hidden) L2-normalised, pooled (mean by default) vectors of every catalogue item's text.

    ``item_texts`` maps item id -> text (``text.item_texts(ml.movies, ...)``) and must cover
    the whole catalogue: a text model can embed an item nobody has rated yet.

    Args:
        backbone: the loaded backbone.
        item_texts: item_id -> text, for the whole catalogue.
        item_ids: the catalogue (``ml.item_ids``): the rows' order.
        max_length: tokens per text (longer ones are cut).
        batch_size: texts per forward pass.
        cache: use the on-disk cache (:func:`embed_cached`).
        progress: show a progress bar.
        pooling: "mean" or "last".

    Returns:
        The (n_items, hidden) float32 vectors, in catalogue order.
    """
    item_ids = check_catalogue(item_ids)
    series = item_texts if isinstance(item_texts, pd.Series) else pd.Series(dict(item_texts))
    missing = pd.Index(item_ids).difference(series.index)
    if len(missing):
        raise ValueError(f"{len(missing)} catalogue items have no text (e.g. {list(missing[:5])}); "
                         "build item texts over ml.movies")
    texts = series.reindex(item_ids).astype(str).tolist()
    return embed_cached(backbone, texts, cache=cache, tag="items", max_length=max_length,
                        batch_size=batch_size, pooling=pooling, normalize=True, progress=progress)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ItemMeanRetrieval(Baseline):
    """Zero-shot: a user is the normalised mean of their liked items' text vectors.

    No training at all (``fit`` only records the call): the item vectors come from a language
    model that has never seen a rating. Every item has text, so every item -- cold ones too --
    is scoreable. ``max_history`` keeps the most recent positives only (None: all).
    """

    def __init__(self, item_ids, item_vectors: np.ndarray, name: str = "text mean",
                 max_history: int | None = None) -> None:
        super().__init__(item_ids)
        v = np.asarray(item_vectors, dtype=np.float32)
        if v.shape[0] != self.n_items or v.ndim != 2:
            raise ValueError(f"item_vectors must be (n_items={self.n_items}, dim), got {v.shape}")
        if max_history is not None and max_history < 1:
            raise ValueError("max_history must be >= 1 or None")
        self.item_vectors = _normalise(v)
        self.max_history = max_history
        self.name = name

    def fit(self, train: Any = None) -> "ItemMeanRetrieval":
        """Nothing to learn (the item vectors are given); returns the model."""
        self.fit_seconds = 0.0
        return self

    def user_vectors(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        """Each user's vector: the normalised mean of their history items' vectors (the last
        ``max_history`` only, when set).
        """
        return hist.mean_vectors(user_ids, self.item_vectors, last=self.max_history, model=self.name)

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:
        return self.user_vectors(user_ids, hist) @ self.item_vectors.T  # (B, n_items) cosine


class _PromptBound(BoundSystem):
    """A bound :class:`PromptRetrieval`: user vectors were encoded once, when binding."""

    user_index: dict[int, int]
    user_matrix: np.ndarray  # (n_encoded_users, dim), L2-normalised

    def score(self, user_ids) -> np.ndarray:
        return self.user_vectors(user_ids) @ self.model.item_vectors.T  # (B, n_items) cosine

    def user_vectors(self, user_ids) -> np.ndarray:
        user_ids = np.asarray(user_ids, dtype=np.int64).ravel()
        missing = [int(u) for u in user_ids if int(u) not in self.user_index]
        if missing:
            raise KeyError(f"users {missing[:5]} were not encoded when binding; pass them in "
                           "users= to bind() (for_stage passes split.users(stage))")
        return self.user_matrix[[self.user_index[int(u)] for u in user_ids]]


class PromptRetrieval(Baseline):
    """Zero-shot: a user is the embedding of their history written as one prompt.

    ``encode_users(history_ratings, user_ids) -> (len(user_ids), dim)`` builds and embeds the
    prompts (see :func:`prompt_user_encoder`, which uses chapter 01's ``text.user_prompts``).
    Binding to a stage encodes that stage's users once; scoring is then a matrix product.
    """

    def __init__(self, item_ids, item_vectors: np.ndarray,
                 encode_users: Callable[[pd.DataFrame, np.ndarray], np.ndarray],
                 name: str = "text prompt") -> None:
        super().__init__(item_ids)
        v = np.asarray(item_vectors, dtype=np.float32)
        if v.shape[0] != self.n_items or v.ndim != 2:
            raise ValueError(f"item_vectors must be (n_items={self.n_items}, dim), got {v.shape}")
        self.item_vectors = _normalise(v)
        self.encode_users = encode_users
        self.name = name

    bound_class = _PromptBound

    def fit(self, train: Any = None) -> "PromptRetrieval":
        """Nothing to learn (the encoder is given); returns the model."""
        self.fit_seconds = 0.0
        return self

    def bind(self, history: pd.DataFrame, name: str | None = None, users=None) -> BoundSystem:
        """Encode the prompts of ``users`` (default: every user in ``history``) now."""
        if isinstance(history, Histories):
            raise TypeError("PromptRetrieval needs the history ratings (a DataFrame) to write prompts")
        system = super().bind(history, name)
        users = np.unique(history["user_id"].to_numpy(np.int64)) if users is None else np.asarray(users, np.int64)
        system.histories.require(users, self.name)
        vectors = _normalise(np.asarray(self.encode_users(history, users), dtype=np.float32))
        if vectors.shape != (len(users), self.item_vectors.shape[1]):
            raise ValueError(f"encode_users returned {vectors.shape}, expected ({len(users)}, "
                             f"{self.item_vectors.shape[1]}): the user and item encoders must match")
        system.user_index = {int(u): i for i, u in enumerate(users)}
        system.user_matrix = vectors
        return system

    def for_stage(self, split: data.Split, stage: str, name: str | None = None) -> BoundSystem:
        """Bind the stage's history (``split.history(stage)``) for the stage's evaluated users."""
        return self.bind(split.history(stage), name, users=split.users(stage))

    def _score(self, user_ids: np.ndarray, hist: Histories) -> np.ndarray:  # pragma: no cover
        raise RuntimeError("PromptRetrieval scores through its bound system: use bind() or for_stage()")


def prompt_user_encoder(
    backbone,
    item_text: pd.Series,
    *,
    budget: int = 256,
    batch_size: int = 16,
    markers: bool = False,
    cache: bool = True,
    progress: bool = True,
    pooling: str = "mean",
    positive_only: bool = True,
) -> Callable[[pd.DataFrame, np.ndarray], np.ndarray]:
    """An ``encode_users`` for :class:`PromptRetrieval`: chapter 01's positive-only prompt
    (``text.user_prompts``, most recent items within ``budget`` tokens), mean-pooled.

    ``positive_only=False`` renders every rating with its score (the "full history" ablation
    of chapter 04); ``pooling="last"`` takes the last token's state instead of the mean.

    ``markers=False`` by default: an un-tuned model has never seen the marker tokens, so plain
    sentences ("Movies this user liked, oldest first: ...") suit zero-shot use better.

    Args:
        backbone: the loaded backbone.
        item_text: item_id -> the item's text in the prompt.
        budget: tokens per prompt.
        batch_size: prompts per forward pass.
        markers: marker tokens (True) or plain sentences.
        cache: use the on-disk cache.
        progress: show a progress bar.
        pooling: "mean" or "last".
        positive_only: render positives only (True) or every rating with its score.

    Returns:
        ``encode(history, users) -> (len(users), hidden)`` vectors.
    """
    from llmrec_lib import text

    def encode(history: pd.DataFrame, users: np.ndarray) -> np.ndarray:
        prompts = text.user_prompts(history, item_text, backbone.tokenizer, budget=budget,
                                    markers=markers, users=users, positive_only=positive_only,
                                    show_rating=not positive_only)
        if (prompts["n_items"] == 0).any():
            bad = prompts.loc[prompts["n_items"] == 0, "user_id"].tolist()[:5]
            raise ValueError(f"users {bad} got an empty prompt (no positive fits the budget of {budget})")
        return embed_cached(backbone, prompts["prompt"].tolist(), cache=cache, tag="users",
                            max_length=budget, batch_size=batch_size, pooling=pooling,
                            normalize=True, progress=progress)

    return encode


class VectorRecommender:
    """Top-K lists from a vector index (:mod:`llmrec_lib.index`): how retrieval is served.

    ``bound`` is a bound system with ``user_vectors`` (a text model or SASRec) and ``index``
    was built over the item vectors of the same model, row ``i`` = ``columns[i]`` (default:
    catalogue column ``i``). ``recommend(user_ids, k)`` is what :func:`evaluate.evaluate`
    calls for a list-returning system; -1 fills slots the index could not fill.
    """

    def __init__(self, bound: BoundSystem, index, name: str | None = None,
                 columns: np.ndarray | None = None) -> None:
        self.bound = bound
        self.index = index
        self.columns = None if columns is None else np.asarray(columns, dtype=np.int64)
        if self.columns is not None and len(self.columns) != index.n:
            raise ValueError(f"columns has {len(self.columns)} entries for an index of {index.n} vectors")
        self.name = name or f"{bound.name} [{index.kind}]"
        self.search_seconds = 0.0

    def recommend(self, user_ids, k: int) -> np.ndarray:
        """The index's top ``k`` catalogue columns for each of ``user_ids`` (-1 where the index
        returns fewer), timing the search.
        """
        queries = self.bound.user_vectors(user_ids)  # (B, dim)
        t0 = time.perf_counter()
        _, ids = self.index.search(queries, min(int(k), self.index.n))  # (B, k') index rows
        self.search_seconds += time.perf_counter() - t0
        if self.columns is not None:
            ids = np.where(ids >= 0, self.columns[np.maximum(ids, 0)], -1)
        if ids.shape[1] < k:
            ids = np.concatenate([ids, np.full((len(ids), k - ids.shape[1]), -1)], axis=1)
        return ids
