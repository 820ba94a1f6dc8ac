"""Text generation with one interface and two backends, a disk cache, and robust parsing.

RecGPT's chapters ask a language model to *write*: a user's interests, short item tags,
explanations, verdicts of an LLM judge. This module keeps that part boring and reliable.

Backends (both are :class:`Generator`, both take plain strings or chat message lists):

:class:`LocalGenerator`
    A transformers causal LM from :func:`backbones.load_backbone` (the bundled
    SmolLM2-135M-Instruct by default, any Hugging Face id or folder on a machine that can run
    it), optionally with a PEFT adapter, prompted through its chat template.
:class:`OpenAIGenerator`
    Any server that speaks the OpenAI chat-completions protocol: ``vllm serve``, llama.cpp's
    ``llama-server``, ``ollama serve``. Only the standard library is used (``urllib``).

:class:`CachedGenerator` wraps either and stores every answer on disk keyed by
``sha256(backend identity, generation settings, messages)``, so re-running a chapter
regenerates nothing, and a run killed half-way keeps every batch it finished.

Generated text is never trusted: :func:`parse_list`, :func:`parse_json_list` and
:func:`parse_json` return a :class:`ParseResult` that says whether parsing worked and why
not, and :class:`ParseReport` counts the failures over a batch. A malformed generation is
counted and reported, never a crash and never a silently empty answer.

Typical use::

    gen = CachedGenerator(LocalGenerator("smollm2-135m", config=GenerationConfig(max_new_tokens=48)))
    texts = gen.generate(["List 3 movie genres this user likes: ..."])
    results, report = parse_all(texts, parse_list, max_items=3)
    print(report)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from llmrec_lib import config as _config

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
ROLES = ("system", "user", "assistant")

# Used when a tokenizer has no chat template of its own (tiny-llama's byte tokenizer, base
# models). It is ChatML, the format SmolLM2-Instruct was trained on, minus SmolLM2's default
# system line, so the tiny test model sees the same special tokens as the real one:
#   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. Every field except ``batch_size`` changes the answers, so every field
    except ``batch_size`` is part of the cache key (and ``seed`` only when sampling).

    Attributes:
        max_new_tokens: the most tokens generated per prompt (the answer may stop earlier).
        temperature: 0 means greedy decoding (deterministic, ``seed`` unused); > 0 samples.
        top_p: nucleus sampling: sample only from the smallest set of tokens whose
            probability adds up to ``top_p`` (1.0 = the whole vocabulary). Ignored when greedy.
        seed: base seed. Each prompt gets its own seed derived from this and the prompt's
            text, so a sampled answer does not depend on which other prompts share its batch.
        batch_size: prompts per forward pass (local) or concurrent requests (HTTP).
        system_prompt: prepended as a system message to prompts that do not start with one.
        repetition_penalty: > 1 discourages repeating tokens (small models loop without it);
            local backend only (HTTP servers get ``frequency_penalty`` instead, see
            :class:`OpenAIGenerator`).
        constraint: the name of a decoding constraint (:func:`register_constraint`), e.g.
            ``"one-tag-per-category/v2"`` from :mod:`llmrec_lib.recgpt.tagger`: tokens it
            refuses are never generated. Local backend only. None: unconstrained.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = _config.DEFAULT_SEED
    batch_size: int = 8
    system_prompt: str | None = None
    repetition_penalty: float = 1.0
    constraint: str | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"GenerationConfig: {msg}")

        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            bad(f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            bad(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            bad(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            bad(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            bad(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            bad(f"system_prompt must be a string or None, got {type(self.system_prompt).__name__}")
        if not isinstance(self.repetition_penalty, (int, float)) or not self.repetition_penalty > 0:
            bad(f"repetition_penalty must be > 0 (1.0 = off), got {self.repetition_penalty!r}")
        if self.constraint is not None and (not isinstance(self.constraint, str) or not self.constraint):
            bad(f"constraint must be None or a registered name, got {self.constraint!r}")

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (temperature 0): the same prompt gives the same answer."""
        return self.temperature == 0

    def cache_fields(self) -> dict:
        """The fields that change the answers by design (the cache key). ``batch_size`` is left
        out on purpose, so a cache filled in batches of 8 serves a run in batches of 32; in exact
        arithmetic it changes nothing, but under bf16 padding changes the sums' rounding and
        with it some greedy answers (72 of 96 SmolLM2 interests agreed between 8 and 32,
        on a 2-core bf16 CPU). ``seed``/``top_p`` do not matter to greedy decoding."""
        out = asdict(self)
        out.pop("batch_size")
        out.pop("system_prompt")  # already inside the messages the key hashes
        if self.greedy:
            out.pop("seed")
            out.pop("top_p")
        if self.constraint is None:  # keeps the keys of answers cached before the field existed
            out.pop("constraint")
        return out


# --------------------------------------------------------------------------------------------
# Decoding constraints
# --------------------------------------------------------------------------------------------

#: name -> factory(tokenizer) -> an object with ``allows(generated_ids, token_id) -> bool``
CONSTRAINTS: dict[str, Callable] = {}

def register_constraint(name: str, factory: Callable) -> None:
    """Make a decoding constraint usable as ``GenerationConfig(constraint=name)``.

    Put a version in the name (``"one-tag-per-category/v2"``): the name is part of the answer
    cache's key, so a changed rule needs a new name, or old answers are served for it.

    Args:
        name: the constraint's name.
        factory: ``factory(tokenizer)`` returns an object whose ``allows(generated, token)``
            says whether ``token`` may follow the answer's tokens so far (``generated``, a
            list of ids, prompt excluded).
    """
    if name in CONSTRAINTS and CONSTRAINTS[name] is not factory:
        raise ValueError(f"constraint {name!r} is already registered to {CONSTRAINTS[name]!r}")
    CONSTRAINTS[name] = factory


def _ranking(order, head: int = 64):
    """Yield the token ids of one row's ranking, the first ``head`` at once and the rest only if
    the walk gets that far (the allowed token is nearly always near the top, and turning the
    whole vocabulary into a list each step would cost more than the step's check)."""
    yield from order[:head].tolist()
    yield from order[head:].tolist()


class _Constrained:
    """A logits processor that applies a registered constraint: in each row it walks the
    candidates from the highest score down and sets every refused one to ``-inf`` until one is
    allowed, and then every refused one that ties with it (bf16 logits tie often, and greedy
    decoding breaks a tie by the lower token id, which may be a refused one). Under greedy
    decoding the chosen token is then exactly the best allowed one; under sampling, tokens
    below the first allowed one are not checked.
    """

    def __init__(self, constraint, prompt_len: int, eos_ids: list[int]):
        self.constraint, self.prompt_len, self.eos = constraint, prompt_len, set(eos_ids)

    def __call__(self, input_ids, scores):
        import torch

        ranked = torch.argsort(scores, dim=-1, descending=True)
        for row, ids in enumerate(input_ids[:, self.prompt_len :].tolist()):
            if self.eos.intersection(ids):
                continue  # the row has finished; what it generates now is padding
            best = None  # the score of the first allowed token
            for token in _ranking(ranked[row]):
                if best is not None and scores[row, token] < best:
                    break
                if self.constraint.allows(ids, token):
                    best = scores[row, token].clone() if best is None else best
                else:
                    scores[row, token] = float("-inf")
        return scores


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


def to_messages(prompt, system_prompt: str | None = None) -> list[Message]:
    """A prompt as a chat message list.

    Args:
        prompt: a string (one user message) or a list of ``{"role", "content"}`` dicts
            (checked and copied).
        system_prompt: prepended as a system message unless the prompt already starts with one.

    Returns:
        The list of message dicts.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, (list, tuple)):
        if not prompt:
            raise ValueError("a message-list prompt must hold at least one message")
        messages = []
        for i, msg in enumerate(prompt):
            if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
                raise ValueError(
                    f"message {i} must be a dict with exactly the keys 'role' and 'content', "
                    f"got {msg!r}"
                )
            if msg["role"] not in ROLES or not isinstance(msg["content"], str):
                raise ValueError(
                    f"message {i}: role must be one of {ROLES} and content a string, got {msg!r}"
                )
            messages.append({"role": msg["role"], "content": msg["content"]})
        if messages[-1]["role"] == "assistant":
            raise ValueError(
                "the last message is an assistant message: end the prompt with a user message "
                "(the model writes the next assistant turn)"
            )
    else:
        raise TypeError(
            f"a prompt must be a string or a list of message dicts, got {type(prompt).__name__}"
        )
    if system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def prompt_seed(base_seed: int, messages: list[Message]) -> int:
    """A per-prompt seed, so a sampled answer depends on its prompt and not on the batch order.

    Args:
        base_seed: the run's seed.
        messages: the prompt's messages.

    Returns:
        A 63-bit seed derived from both.
    """
    blob = json.dumps([base_seed, messages], sort_keys=True, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def _as_prompt_list(prompts) -> list:
    if isinstance(prompts, str):
        raise TypeError("generate() takes a list of prompts; wrap a single prompt as [prompt]")
    prompts = list(prompts)
    if prompts and isinstance(prompts[0], dict):  # a bare message list is ONE prompt
        raise TypeError("generate() got a list of message dicts: that is one prompt; pass [messages]")
    return prompts


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


class Generator:
    """What every backend offers: ``generate(prompts) -> list[str]`` in input order.

    Subclasses implement :meth:`_generate` on validated message lists and :attr:`identity`,
    a string that names the weights (it keys the cache: two generators with equal identity and
    config must give equal answers).
    """

    config: GenerationConfig

    @property
    def identity(self) -> str:  # pragma: no cover - abstract
        """What the answers depend on besides the prompt and the settings (model, weights, server):
        part of the cache key.
        """
        raise NotImplementedError

    def generate(self, prompts: Sequence, *, config: GenerationConfig | None = None, progress: bool = True) -> list[str]:
        """Generate one answer per prompt (a string, or a list of chat messages).

        Args:
            prompts: list of prompts.
            config: overrides the generator's :class:`GenerationConfig` for this call.
            progress: show a tqdm bar.

        Returns the generated text only (no prompt), stripped of outer whitespace.
        """
        cfg = config or self.config
        messages = [to_messages(p, cfg.system_prompt) for p in _as_prompt_list(prompts)]
        if not messages:
            return []
        out = self._generate(messages, cfg, progress)
        assert len(out) == len(messages)
        return out

    def _generate(self, messages: list[list[Message]], cfg: GenerationConfig, progress: bool) -> list[str]:
        raise NotImplementedError  # pragma: no cover - abstract


# --------------------------------------------------------------------------------------------
# Local transformers backend
# --------------------------------------------------------------------------------------------


def weights_fingerprint(model) -> str:
    """A cheap fingerprint of a model's weights, for the cache key.

    Hashing every byte of a 7B model would take seconds; instead each tensor contributes its
    name, shape, dtype, its sum (float64: any real update moves it) and up to 256 evenly spaced
    values. Fine-tuning or loading an adapter changes the fingerprint, so a cached answer from
    other weights is never returned.

    Args:
        model: a torch module.

    Returns:
        A hex digest.
    """
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            flat = tensor.detach().reshape(-1)
            h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            if flat.numel() == 0 or not (flat.is_floating_point() or flat.dtype in (torch.int64, torch.int32)):
                continue
            h.update(repr(float(flat.double().sum())).encode())
            step = max(1, flat.numel() // 256)
            h.update(flat[::step][:256].double().cpu().numpy().tobytes())
    return h.hexdigest()


class _SeededSampler:
    """A logits processor that samples each row with its own ``torch.Generator``.

    transformers' sampler draws the whole batch from one random stream, so a prompt's sampled
    answer would depend on its neighbours in the batch. Here row ``i`` draws from a generator
    seeded by its own prompt, then returns scores that are ``-inf`` everywhere except the drawn
    token, and ``generate`` runs greedy decoding, which picks exactly that token.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        import torch

        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(s))
            self.generators.append(g)

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature  # (B, V)
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = (cum - sorted_logits.softmax(-1)) > self.top_p  # keeps the top token
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(-1)  # (B, V)
        out = torch.full_like(scores, float("-inf"))
        for row, gen in enumerate(self.generators):
            token = torch.multinomial(probs[row], 1, generator=gen)  # (1,)
            out[row, token] = 0.0
        return out


class LocalGenerator(Generator):
    """Generate with a local transformers causal LM through its chat template.

    Args:
        backbone: a :class:`backbones.Backbone` (decoder) or a name for
            :func:`backbones.load_backbone` (``"smollm2-135m"``, ``"tiny-llama"``, a hub id or
            a folder).
        adapter_id: a PEFT adapter folder (or hub id) to apply on top, e.g. a LoRA trained in
            a later chapter. peft injects the adapter's layers into ``backbone.model`` in
            place, so give an adapter a backbone of its own.
        config: default :class:`GenerationConfig`.
        device: where to load a named backbone (default :func:`config.get_device`).
        use_autocast: bf16 autocast (:func:`config.autocast`; only where the hardware has
            bf16 instructions), 3-7x faster on the project's CPUs. Under autocast a prompt's greedy answer alone and in a padded batch can
            differ where two tokens are nearly tied; turn it off for bit-stable answers.
        identity: the name used by the cache; default: backbone name, adapter and a
            fingerprint of the weights (:func:`weights_fingerprint`).

    Batches are left-padded (every row then ends at its last prompt token, where the new tokens
    are appended) and sorted by length to waste less compute on padding; answers come back in
    input order. After a call, :attr:`last_new_tokens` holds each answer's token count, and
    :attr:`last_hit_limit` how many answers stopped at ``max_new_tokens`` (likely cut off).
    """

    def __init__(
        self,
        backbone="smollm2-135m",
        adapter_id: str | None = None,
        *,
        config: GenerationConfig | None = None,
        device: str | None = None,
        use_autocast: bool = True,
        identity: str | None = None,
    ):
        from llmrec_lib import backbones

        if isinstance(backbone, str):
            backbone = backbones.load_backbone(backbone, device=device)
        if not isinstance(backbone, backbones.Backbone):
            raise TypeError(f"backbone must be a Backbone or a model name, got {type(backbone).__name__}")
        if backbone.kind != "decoder":
            raise ValueError(
                f"{backbone.name!r} is an encoder ({type(backbone.model).__name__}); generation "
                "needs a causal LM such as 'smollm2-135m' or 'tiny-llama'."
            )
        self.backbone = backbone
        self.tokenizer = backbone.tokenizer
        self.model = backbone.model
        self.adapter_id = adapter_id
        if adapter_id is not None:
            self.model = self._load_adapter(adapter_id)
        self.config = config or GenerationConfig()
        self.use_autocast = use_autocast
        self._identity = identity
        self._fp_state: tuple | None = None
        self._fp = ""
        self.template = getattr(self.tokenizer, "chat_template", None) or FALLBACK_CHAT_TEMPLATE
        self.last_new_tokens: list[int] = []
        self.last_hit_limit = 0

    def _load_adapter(self, adapter_id: str):
        try:
            from peft import PeftModel
        except ImportError as err:  # pragma: no cover - peft is a dependency
            raise ImportError("adapters need peft: pip install peft") from err
        try:
            return PeftModel.from_pretrained(self.model, adapter_id, is_trainable=False).eval()
        except (OSError, ValueError) as err:
            raise OSError(
                f"Cannot load the PEFT adapter {adapter_id!r}: pass the folder that holds "
                f"adapter_config.json and adapter_model.safetensors (what save_pretrained "
                f"wrote). ({type(err).__name__}: {err})"
            ) from err

    @property
    def identity(self) -> str:
        """The model's name and its weights' fingerprint (:func:`weights_fingerprint`)."""
        if self._identity is not None:
            return self._identity
        # the weights' fingerprint identifies the adapter; its folder's name is only a readable
        # label, so moving or cloning the project keeps its cached answers
        label = Path(self.adapter_id).name if self.adapter_id and Path(self.adapter_id).is_dir() else self.adapter_id
        adapter = f"+{label}" if self.adapter_id else ""
        return f"local:{self.backbone.name}{adapter}#{self._fingerprint()[:16]}"

    def _fingerprint(self) -> str:
        """:func:`weights_fingerprint`, recomputed only when a tensor changed: every in-place
        update (an optimizer step, a LoRA merge) bumps a tensor's version counter, and
        replacing a tensor changes its address. Checking those is ~1 ms; hashing is ~0.5 s
        for SmolLM2 on CPU, too slow to repeat on every call."""
        state = tuple(
            (name, t.data_ptr(), t._version)
            for name, t in list(self.model.named_parameters()) + list(self.model.named_buffers())
        )
        if self._fp_state != state:
            self._fp_state, self._fp = state, weights_fingerprint(self.model)
        return self._fp

    def render(self, messages: list[Message]) -> str:
        """The exact text the model reads for one prompt (chat template applied, ending with
        the assistant header so the model writes the answer)."""
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=True
        )

    def _eos_ids(self) -> list[int]:
        ids = set()
        for source in (getattr(self.model, "generation_config", None), self.tokenizer):
            eos = getattr(source, "eos_token_id", None)
            if eos is None:
                continue
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        if not ids:
            raise ValueError(f"{self.backbone.name!r} has no EOS token: generation could not stop")
        return sorted(int(i) for i in ids)

    def _constraint(self, name: str):
        """The tokenizer-bound constraint ``name`` (built once per generator)."""
        if name not in CONSTRAINTS:
            raise ValueError(f"unknown decoding constraint {name!r}; registered: {sorted(CONSTRAINTS)}. "
                             "Import the module that registers it first (llmrec_lib.recgpt.tagger "
                             "registers 'one-tag-per-category/v2').")
        built = self.__dict__.setdefault("_constraints", {})
        if name not in built:
            built[name] = CONSTRAINTS[name](self.tokenizer)
        return built[name]

    def next_token_logprobs(self, prompts: Sequence, tokens: Sequence[int], at: Callable[[str, str], bool], *,
                            max_new_tokens: int = 12, progress: bool = True):
        """Greedy-decode each answer up to a point, and read the model's distribution there.

        Each prompt's answer is decoded greedily (batched as :meth:`generate` does, under this
        generator's batch size) until ``at(answer_so_far, next_token_text)`` first holds; the
        log-probabilities of ``tokens`` as that next token are returned. It lets a caller rank
        the options the model weighs at one step (say, the word after a tag's modifier)
        instead of keeping only the one greedy decoding takes.

        Args:
            prompts: the prompts (strings or chat message lists), as for :meth:`generate`.
            tokens: the token ids whose log-probabilities are read.
            at: a test on the decoded answer so far and the greedy next token's text.
            max_new_tokens: how far to decode before giving up on ``at``.
            progress: show a tqdm bar over the batches.

        Returns:
            The answer so far at that step (None where ``at`` never held) and a float32 array
            (len(prompts), len(tokens)) of log-probabilities (NaN where ``at`` never held).
        """
        import numpy as np
        from tqdm.auto import tqdm

        messages = [to_messages(p, self.config.system_prompt) for p in _as_prompt_list(prompts)]
        texts = [self.render(m) for m in messages]
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=self.config.batch_size)
        heads: list[str | None] = [None] * len(texts)
        out = np.full((len(texts), len(tokens)), np.nan, dtype=np.float32)
        self._longest_first(texts, max_new_tokens)  # a clear error if a prompt cannot fit
        # batches in input order: the order the committed ranked tags were read in
        batches = [list(range(a, min(a + cfg.batch_size, len(texts)))) for a in range(0, len(texts), cfg.batch_size)]
        for idx in tqdm(batches, desc=f"read {self.backbone.name}", unit="batch", disable=not progress, leave=False):
            new, logits = self._greedy_with_logits([texts[i] for i in idx], cfg)
            for row, i in enumerate(idx):
                got = self._read_at(new[row], [lg[row] for lg in logits], tokens, at)
                if got is not None:
                    heads[i], out[i] = got
        return heads, out

    def prompt_states(self, prompts: Sequence, *, progress: bool = True):
        """The model's last hidden state (after its final norm) at each prompt's last token:
        where the answer's first token is predicted, so the model's whole reading of the
        prompt before it writes anything. A trained head can rank options from it.

        Prompts are rendered as :meth:`generate` renders them, run longest first in batches of
        this generator's batch size, left-padded, with positions counted from each row's first
        real token (as generation counts them), so a padded row reads as it would alone.

        Args:
            prompts: the prompts (strings or chat message lists), as for :meth:`generate`.
            progress: show a tqdm bar over the batches.

        Returns:
            A float32 array (len(prompts), hidden size), rows in the order of ``prompts``.
        """
        import numpy as np
        import torch
        from tqdm.auto import tqdm

        messages = [to_messages(p, self.config.system_prompt) for p in _as_prompt_list(prompts)]
        texts = [self.render(m) for m in messages]
        if not texts:
            raise ValueError("prompt_states needs at least one prompt")
        order = self._longest_first(texts, 0)
        size = self.config.batch_size
        body = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        body = body.base_model  # the transformer without its LM head: last_hidden_state is normed
        device = self.backbone.device
        out = np.zeros((len(texts), body.config.hidden_size), dtype=np.float32)
        batches = [order[a : a + size] for a in range(0, len(order), size)]
        for idx in tqdm(batches, desc=f"states {self.backbone.name}", unit="batch", disable=not progress,
                        leave=False):
            enc = self._left_padded([texts[i] for i in idx])
            mask = enc["attention_mask"]
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode(), _config.autocast(str(device), enabled=self.use_autocast):
                h = body(input_ids=enc["input_ids"].to(device), attention_mask=mask.to(device),
                         position_ids=positions.to(device)).last_hidden_state
            out[idx] = h[:, -1, :].float().cpu().numpy()
        return out

    def _greedy_with_logits(self, texts: list[str], cfg: GenerationConfig):
        """Greedy new tokens (B, new) of one left-padded batch, and the raw logits of each step."""
        import torch
        import transformers

        enc = self._left_padded(texts)
        device = self.backbone.device
        gen_cfg = transformers.GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=False, num_beams=1,
                                                eos_token_id=self._eos_ids(), pad_token_id=self.backbone.pad_token_id,
                                                output_logits=True, return_dict_in_generate=True)
        with torch.inference_mode(), _config.autocast(str(device), enabled=self.use_autocast):
            res = self.model.generate(input_ids=enc["input_ids"].to(device),
                                      attention_mask=enc["attention_mask"].to(device), generation_config=gen_cfg)
        new = res.sequences[:, enc["input_ids"].shape[1] :].cpu().tolist()
        return new, [lg.float().cpu() for lg in res.logits]

    def _read_at(self, new: list[int], logits: list, tokens: Sequence[int], at: Callable[[str, str], bool]):
        """The first step of one greedy answer where ``at`` holds: (answer so far, log-probs)."""
        import torch

        for s, nxt in enumerate(new[: len(logits)]):
            so_far = self.tokenizer.decode(new[:s], skip_special_tokens=True)
            if at(so_far, self.tokenizer.decode([nxt])):
                logp = torch.log_softmax(logits[s], dim=-1)
                return so_far, logp[list(tokens)].numpy()
        return None

    def _generate(self, messages, cfg, progress):
        from tqdm.auto import tqdm

        texts = [self.render(m) for m in messages]
        order = self._longest_first(texts, cfg.max_new_tokens)
        seeds = [prompt_seed(cfg.seed, m) for m in messages]
        results: list[str | None] = [None] * len(texts)
        counts: list[int] = [0] * len(texts)
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        bar = tqdm(batches, desc=f"generate {self.backbone.name}", unit="batch", disable=not progress, leave=False)
        for idx in bar:
            outs, n_new = self._generate_batch([texts[i] for i in idx], [seeds[i] for i in idx], cfg)
            for i, text, n in zip(idx, outs, n_new):
                results[i], counts[i] = text, n
        self.last_new_tokens = counts
        self.last_hit_limit = sum(n >= cfg.max_new_tokens for n in counts)
        return results  # type: ignore[return-value]

    def _longest_first(self, texts: list[str], max_new_tokens: int) -> list[int]:
        """The prompts' indices, longest first (an out-of-memory error comes early, and batches
        waste less on padding); a clear error when a prompt and its answer cannot fit."""
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and max(lengths) + max_new_tokens > limit:
            worst = max(range(len(texts)), key=lengths.__getitem__)
            raise ValueError(
                f"prompt {worst} is {lengths[worst]} tokens; with max_new_tokens="
                f"{max_new_tokens} it exceeds the model's {limit} positions. Shorten the "
                "prompt (e.g. fewer history items) or lower max_new_tokens."
            )
        return sorted(range(len(texts)), key=lambda i: -lengths[i])

    def _left_padded(self, texts: list[str]):
        """One batch of rendered prompts, tokenized and padded on the left, so that every row
        ends at its last prompt token, where the new tokens are appended."""
        tok = self.tokenizer
        before, tok.padding_side = tok.padding_side, "left"
        try:
            return tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        finally:
            tok.padding_side = before

    def _generate_batch(self, texts: list[str], seeds: list[int], cfg: GenerationConfig) -> tuple[list[str], list[int]]:
        import torch
        import transformers

        tok = self.tokenizer
        enc = self._left_padded(texts)
        device = self.backbone.device
        input_ids = enc["input_ids"].to(device)  # (B, T)
        attention_mask = enc["attention_mask"].to(device)  # (B, T), zeros on the left
        eos = self._eos_ids()
        gen_cfg = transformers.GenerationConfig(
            max_new_tokens=cfg.max_new_tokens,
            do_sample=False,  # sampling, when asked for, is done per row by _SeededSampler
            num_beams=1,
            repetition_penalty=float(cfg.repetition_penalty),
            eos_token_id=eos,
            pad_token_id=self.backbone.pad_token_id,
        )
        processors = []
        if cfg.constraint is not None:
            processors.append(_Constrained(self._constraint(cfg.constraint), input_ids.shape[1], eos))
        if not cfg.greedy:
            processors.append(_SeededSampler(seeds, cfg.temperature, cfg.top_p, device))
        with torch.inference_mode(), _config.autocast(str(device), enabled=self.use_autocast):
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=gen_cfg,
                logits_processor=transformers.LogitsProcessorList(processors),
            )  # (B, T + new)
        new = out[:, input_ids.shape[1] :].cpu()  # (B, new); rows that stopped are padded
        texts_out, counts = [], []
        eos_set = set(eos)
        for row in new.tolist():
            kept = []
            for t in row:
                if t in eos_set:  # EOS ends the answer; everything after it is padding
                    break
                kept.append(t)
            counts.append(len(kept))
            texts_out.append(tok.decode(kept, skip_special_tokens=True).strip())
        return texts_out, counts


# --------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend
# --------------------------------------------------------------------------------------------


class GenerationServerError(RuntimeError):
    """The HTTP server could not be reached, or answered with an error or unreadable JSON."""


class OpenAIGenerator(Generator):
    """Generate through an OpenAI-compatible chat-completions endpoint.

    Works with ``vllm serve MODEL`` (http://localhost:8000), llama.cpp's ``llama-server -m
    model.gguf`` (http://localhost:8080) and ``ollama serve`` (http://localhost:11434).

    Args:
        base_url: the server root, with or without a trailing ``/v1``.
        model: the model name the server expects (also part of the cache identity: give each
            distinct model a distinct name, since llama.cpp answers with whatever it loaded).
        api_key: sent as ``Authorization: Bearer``; default ``$OPENAI_API_KEY`` if set.
        config: default :class:`GenerationConfig`. ``batch_size`` requests run concurrently
            (servers like vLLM batch them on the GPU); ``repetition_penalty`` is not part of
            the OpenAI protocol and is sent as vLLM's extra field of the same name only when
            it differs from 1.
        timeout: seconds to wait for one answer.
        max_retries: retries, with back-off, for busy-server answers (429, 502, 503, 504)
            and timeouts; other errors fail at once.
    """

    RETRY_STATUS = (429, 502, 503, 504)

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        config: GenerationConfig | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
    ):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string (the server's model name), got {model!r}")
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.base_url = root
        self.url = f"{root}/v1/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.config = config or GenerationConfig()
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)

    @property
    def identity(self) -> str:
        """``openai:<model>@<base_url>``: a server's weights are identified by its model name."""
        return f"openai:{self.model}@{self.base_url}"

    def _payload(self, messages: list[Message], cfg: GenerationConfig) -> dict:
        if cfg.constraint is not None:
            raise ValueError(f"constraint {cfg.constraint!r} needs the local backend (LocalGenerator): an "
                             "OpenAI-compatible server cannot run a Python logits processor")
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": cfg.max_new_tokens,
            "temperature": float(cfg.temperature),
            "n": 1,
        }
        if not cfg.greedy:
            body["top_p"] = float(cfg.top_p)
            body["seed"] = prompt_seed(cfg.seed, messages) % (2**31)
        if cfg.repetition_penalty != 1.0:
            body["repetition_penalty"] = float(cfg.repetition_penalty)
        return body

    def complete(self, messages: list[Message], cfg: GenerationConfig | None = None) -> str:
        """One request: messages in, the assistant's text out (raises
        :class:`GenerationServerError` with what to do when anything goes wrong)."""
        cfg = cfg or self.config
        data = json.dumps(self._payload(messages, cfg)).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as err:
                body = err.read()[:500].decode("utf-8", "replace")
                if err.code in self.RETRY_STATUS and attempt < self.max_retries:
                    time.sleep(0.5 * 2**attempt)
                    continue
                hint = {
                    401: "check api_key (or $OPENAI_API_KEY).",
                    404: f"check base_url ({self.base_url}) and that the server serves /v1/chat/completions.",
                    400: f"check the model name {self.model!r} (the server's /v1/models lists them) and the settings.",
                }.get(err.code, "see the server's log.")
                raise GenerationServerError(
                    f"{self.url} answered HTTP {err.code} {err.reason}: {body!r}. {hint}"
                ) from None
            except (TimeoutError, socket.timeout) as err:
                if attempt < self.max_retries:
                    continue
                raise GenerationServerError(
                    f"{self.url} did not answer within {self.timeout:.0f} s ({self.max_retries + 1} "
                    "tries). Raise timeout=, lower max_new_tokens or batch_size, or check the server."
                ) from err
            except urllib.error.URLError as err:
                raise GenerationServerError(
                    f"Cannot reach {self.url}: {err.reason}. Is the server running? Start one, e.g. "
                    "`vllm serve HuggingFaceTB/SmolLM2-135M-Instruct` (port 8000), `llama-server -m "
                    "model.gguf` (port 8080) or `ollama serve` (port 11434), and pass its address "
                    "as base_url."
                ) from err
        try:
            reply = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise GenerationServerError(
                f"{self.url} answered with text that is not JSON: {raw[:200]!r}. Is base_url an "
                "OpenAI-compatible server (not a web page or a proxy's error page)?"
            ) from err
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise GenerationServerError(
                f"{self.url} answered JSON without choices[0].message.content: "
                f"{json.dumps(reply)[:300]}. Is this an OpenAI-compatible chat endpoint?"
            ) from None
        if content is None:  # some servers send null content for an empty answer
            content = ""
        if not isinstance(content, str):
            raise GenerationServerError(f"{self.url} answered non-text content: {content!r}")
        return content.strip()

    def _generate(self, messages, cfg, progress):
        from tqdm.auto import tqdm

        results: list[str | None] = [None] * len(messages)
        bar = tqdm(total=len(messages), desc=f"generate {self.model}", unit="prompt", disable=not progress, leave=False)
        with ThreadPoolExecutor(max_workers=cfg.batch_size) as pool:
            futures = {pool.submit(self.complete, m, cfg): i for i, m in enumerate(messages)}
            try:
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
            finally:
                bar.close()
        return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------


def cache_key(identity: str, cfg: GenerationConfig, messages: list[Message]) -> str:
    """The key of one cached answer.

    Args:
        identity: the backend's identity (:attr:`Generator.identity`).
        cfg: the generation settings; only those that change answers count.
        messages: the prompt's messages.

    Returns:
        sha256 hex digest of the three.
    """
    blob = json.dumps([identity, cfg.cache_fields(), messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedGenerator(Generator):
    """Wrap a generator so every answer is stored on disk and never generated twice.

    One JSON-lines file per backend identity under ``cache_dir`` (default
    ``config.cache_dir("generations")``), one line per answer: ``{"key", "text", "identity",
    "messages", "config", "time"}``, readable with any text tool. Misses are generated one batch at a
    time and each finished batch is appended (flushed and fsynced) before the next starts, so
    a run killed half-way keeps what it finished; a line cut off by the kill is skipped (and
    counted in :attr:`n_corrupt`) when the file is read again.

    :attr:`hits` and :attr:`misses` count prompts over the generator's life (duplicates of a
    prompt inside one call count as hits); :attr:`last_hits`/:attr:`last_misses` cover the
    latest call.
    """

    def __init__(self, inner: Generator, cache_dir: str | os.PathLike | None = None):
        if not isinstance(inner, Generator) or isinstance(inner, CachedGenerator):
            raise TypeError("CachedGenerator wraps a LocalGenerator or an OpenAIGenerator")
        self.inner = inner
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else _config.cache_dir("generations")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.last_hits = self.last_misses = 0
        self.n_corrupt = 0
        self._tables: dict[str, dict[str, str]] = {}  # file path -> {key: text}

    @property
    def config(self) -> GenerationConfig:  # type: ignore[override]
        """The wrapped generator's settings (setting it sets theirs)."""
        return self.inner.config

    @config.setter
    def config(self, value: GenerationConfig) -> None:
        self.inner.config = value

    @property
    def identity(self) -> str:
        """The wrapped generator's identity."""
        return self.inner.identity

    def path_for(self, identity: str) -> Path:
        """The cache file (JSON lines) of one generator identity under ``cache_dir``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity.split("#")[0])[:60].strip("_")
        return self.cache_dir / f"{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.jsonl"

    @property
    def path(self) -> Path:
        """The cache file of the wrapped generator's current identity."""
        return self.path_for(self.identity)

    def _table(self, path: Path) -> dict[str, str]:
        if str(path) in self._tables:
            return self._tables[str(path)]
        table: dict[str, str] = {}
        if path.is_file():
            with open(path, "rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        table[record["key"]] = record["text"]
                    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                        if line.strip():
                            self.n_corrupt += 1  # a line cut off by a killed run
        self._tables[str(path)] = table
        return table

    def _append(self, path: Path, records: list[dict]) -> None:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        with open(path, "ab") as f:
            if f.tell() > 0:
                with open(path, "rb") as r:  # a killed run may have left half a line
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        lines = b"\n" + lines
            f.write(lines)  # one write of whole lines: an append never interleaves records
            f.flush()
            os.fsync(f.fileno())

    def _generate(self, messages, cfg, progress):
        from tqdm.auto import tqdm

        identity = self.identity
        path = self.path_for(identity)
        table = self._table(path)
        keys = [cache_key(identity, cfg, m) for m in messages]
        todo: dict[str, list[Message]] = {}
        for k, m in zip(keys, messages):
            if k not in table and k not in todo:
                todo[k] = m
        self.last_misses = len(todo)
        self.last_hits = len(keys) - len(todo)
        self.hits += self.last_hits
        self.misses += self.last_misses
        if todo:
            # Similar lengths batch together (less padding); answers do not depend on batching.
            pending = sorted(todo.items(), key=lambda kv: len(json.dumps(kv[1])))
            bar = tqdm(
                total=len(pending),
                desc=f"generate ({self.last_hits} cached)",
                unit="prompt",
                disable=not progress,
                leave=False,
            )
            try:
                for start in range(0, len(pending), cfg.batch_size):
                    chunk = pending[start : start + cfg.batch_size]
                    texts = self.inner._generate([m for _, m in chunk], cfg, False)
                    now = time.time()
                    records = [
                        {
                            "key": k,
                            "text": t,
                            "identity": identity,
                            "config": cfg.cache_fields(),
                            "messages": m,
                            "time": round(now, 3),
                        }
                        for (k, m), t in zip(chunk, texts)
                    ]
                    self._append(path, records)
                    for (k, _), t in zip(chunk, texts):
                        table[k] = t
                    bar.update(len(chunk))
            finally:
                bar.close()
        return [table[k] for k in keys]

    @property
    def stats(self) -> dict:
        """Cache hits, misses (over the generator's life and in the latest call) and corrupt lines."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "last_hits": self.last_hits,
            "last_misses": self.last_misses,
            "corrupt_lines": self.n_corrupt,
        }


def load_generator(
    model: str | None = None,
    *,
    base_url: str | None = None,
    adapter_id: str | None = None,
    config: GenerationConfig | None = None,
    cache: bool = True,
) -> Generator:
    """The generator a chapter uses: an HTTP server when ``base_url`` (or
    ``$LLMREC_LLM_BASE_URL``) is set, else a local model.

    A reader with a GPU server runs e.g. ``vllm serve Qwen/Qwen2.5-7B-Instruct`` and sets
    ``LLMREC_LLM_BASE_URL=http://localhost:8000 LLMREC_LLM_MODEL=Qwen/Qwen2.5-7B-Instruct``.

    Args:
        model: the model's name (None: ``$LLMREC_LLM_MODEL``, else the bundled
            ``"smollm2-135m"``).
        base_url: an OpenAI-compatible server (None: ``$LLMREC_LLM_BASE_URL``, else local).
        adapter_id: a PEFT adapter folder (or hub id) applied on top of the local model.
        config: the generation settings (None: the defaults).
        cache: wrap the generator in a :class:`CachedGenerator`.

    Returns:
        The :class:`Generator`.
    """
    base_url = base_url or os.environ.get("LLMREC_LLM_BASE_URL") or None
    model = model or os.environ.get("LLMREC_LLM_MODEL") or None
    if base_url:
        if model is None:
            raise ValueError("an HTTP backend needs the server's model name: pass model= or set LLMREC_LLM_MODEL")
        if adapter_id is not None:
            raise ValueError("adapter_id applies to local models; load the adapter in the server instead")
        gen: Generator = OpenAIGenerator(base_url, model, config=config)
    else:
        gen = LocalGenerator(model or "smollm2-135m", adapter_id, config=config)
    return CachedGenerator(gen) if cache else gen


# --------------------------------------------------------------------------------------------
# Parsing generated text
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseResult:
    """What a parser made of one generation.

    ``ok`` is False when the text did not hold what was asked for; ``items`` may then still
    hold what could be salvaged (e.g. 2 tags when 3 were required) and ``reason`` says what was
    wrong, as "category: detail" (:class:`ParseReport` counts categories). When ``ok`` is
    True, ``reason`` is "ok" or notes what was cleaned up.
    """

    items: list[str]
    ok: bool
    reason: str
    raw: str = ""


@dataclass(frozen=True)
class JsonResult:
    """What :func:`parse_json` made of one generation: the decoded ``value`` (None if not ok)."""

    value: Any
    ok: bool
    reason: str
    raw: str = ""


_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?|```")
# "1." "2)" "(3)" "4:" "[5]" "-" "*" "•" "a)" at the start of a line, then the item.
_MARKER = re.compile(r"^\s*(?:[-*•·+–—]|\(?\d{1,2}[.):\]]|\[\d{1,2}\]|\(?[a-z]\))\s*(?=\S)")
_INLINE_NUMBER = re.compile(r"(?:^|\s)\(?\d{1,2}[.)]\s+")
_PREAMBLE = re.compile(
    r"^(?:sure|okay|ok|certainly|of course|absolutely|here(?:'s| is| are)|based on|"
    r"the user|this user|these are|i (?:think|would|believe|suggest|recommend)|i'd|"
    r"below|great|answer|output|response)\b",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|i cannot|i can'?t|i'm unable|i am unable|as an ai|"
    r"i don'?t have (?:enough )?(?:information|access))\b",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^.*?\b(?:likes?|enjoys?|prefers?|loves?|includes?|including|are|is|would be)\s+", re.IGNORECASE
)
_EXPLANATION = re.compile(r"\s+[-–—]\s+|:\s+|\s+\(|\s+because\b", re.IGNORECASE)


def _text_or_fail(text, parser: str) -> tuple[str | None, str]:
    if text is None or not isinstance(text, str):
        return None, f"{parser}: no text (got {type(text).__name__})"
    cleaned = _FENCE.sub("\n", text).strip()
    if not cleaned:
        return None, "empty output"
    return cleaned, ""


def _clean_item(item: str) -> str:
    """One candidate phrase -> the phrase: drop markdown, quotes, an explanation after a
    dash/colon/parenthesis, a leading 'and', trailing punctuation."""
    s = item.strip()
    s = re.sub(r"[*_`]{1,3}", "", s)  # **bold**, __x__, `code`
    head = _EXPLANATION.split(s, maxsplit=1)[0].strip()
    if head:
        s = head
    s = re.sub(r"^(?:and|or)\s+", "", s, flags=re.IGNORECASE)
    s = s.strip().strip("\"'“”‘’«»").strip()
    s = s.rstrip(".,;:!?").strip().strip("\"'“”‘’«»").strip()
    return s


def _finish(candidates: list[str], raw: str, *, max_items, min_items, max_words) -> ParseResult:
    notes: list[str] = []
    cleaned = [_clean_item(c) for c in candidates]
    cleaned = [c for c in cleaned if re.search(r"\w", c)]  # "{", "--", "" are not items
    long = [c for c in cleaned if len(c.split()) > max_words]
    short = [c for c in cleaned if len(c.split()) <= max_words]
    if long:
        notes.append(f"dropped {len(long)} item(s) longer than {max_words} words")
    items: list[str] = []
    seen: set[str] = set()
    for c in short:
        key = c.casefold()
        if key not in seen:
            seen.add(key)
            items.append(c)
    if len(items) < len(short):
        notes.append(f"removed {len(short) - len(items)} duplicate(s)")
    if not items:
        reason = "no items found" if not long else f"no short items: only sentences longer than {max_words} words"
        return ParseResult([], False, reason, raw)
    if max_items is not None and len(items) > max_items:
        notes.append(f"kept the first {max_items} of {len(items)} items")
        items = items[:max_items]
    if len(items) < min_items:
        return ParseResult(items, False, f"too few items: found {len(items)}, expected at least {min_items}", raw)
    return ParseResult(items, True, "; ".join(notes) or "ok", raw)


def parse_list(
    text: str,
    max_items: int | None = None,
    *,
    min_items: int = 1,
    max_words: int = 8,
) -> ParseResult:
    """Extract a list of short phrases from a model's answer.

    Handles what small models actually write: a preamble ("Here are three short tags:"),
    numbered or bulleted lines ("1. **Sci-Fi** - the user watched..."), one comma- or
    semicolon-separated line ("Genres: Action, Comedy, and Drama"), inline numbering ("1. Action
    2. Comedy"), a JSON or Python list, code fences, quotes, duplicates, closing remarks.

    Args:
        text: the generated text.
        max_items: keep at most this many items (the first ones); more is not an error.
        min_items: fewer items than this makes the result not ok (the items are still returned).
        max_words: longer candidates are sentences, not phrases, and are dropped.

    Not ok (``ok=False``) for: empty output, a refusal ("I'm sorry, I cannot..."), only
    sentences, fewer than ``min_items`` items.

    Returns:
        A :class:`ParseResult`: the items, whether the answer is ok, why not, and the raw text.
    """
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be None or an int >= 1, got {max_items!r}")
    raw = text if isinstance(text, str) else ""
    cleaned, why = _text_or_fail(text, "parse_list")
    if cleaned is None:
        return ParseResult([], False, why, raw)
    kw = dict(max_items=max_items, min_items=min_items, max_words=max_words)

    # 1. A JSON/Python list anywhere in the text: trust its structure. An answer that *starts*
    #    as JSON but does not decode (cut off by max_new_tokens, objects instead of strings) is
    #    malformed: splitting its braces and quotes at commas would only invent items.
    if "[" in cleaned or cleaned[0] == "{":
        as_json = parse_json_list(cleaned, max_words=max_words)
        if as_json.items:
            return _finish(as_json.items, raw, **kw)
        if cleaned[0] in "[{":
            return ParseResult([], False, f"malformed JSON: {as_json.reason}", raw)

    lines = [line.strip() for line in cleaned.splitlines() if line.strip()]
    # 2. Numbered/bulleted lines: the items are exactly those lines; the rest is chatter.
    marked = _marked_items(lines)
    if marked is not None:
        return _finish(marked, raw, **kw)
    # 3. Prose: a refusal is not a list.
    if _REFUSAL.search(cleaned):
        return ParseResult([], False, "refusal: " + cleaned[:80], raw)
    # 4.-5. Drop the chatter, then split comma/semicolon lists of short phrases.
    return _finish(_split_phrases(_prose_body(lines), max_words), raw, **kw)


def _marked_items(lines: list[str]) -> list[str] | None:
    """The items of numbered or bulleted lines, markers removed (None when no line is marked).

    One marked line that numbers several items inline ("1. Action 2. Comedy 3. Drama") is
    split at its numbers."""
    marked = [line for line in lines if _MARKER.match(line)]
    if not marked:
        return None
    if len(marked) == 1 and len(_INLINE_NUMBER.findall(marked[0])) > 1:
        return [p for p in _INLINE_NUMBER.split(marked[0]) if p.strip()]
    return [_MARKER.sub("", line) for line in marked]


def _prose_body(lines: list[str]) -> list[str]:
    """Prose lines less their chatter: preamble and closing lines ("Here are...:", "Sure!",
    "Hope this helps") go when something else remains, and a leading "Label:" goes."""
    body = [line for line in lines if not (line.endswith(":") or _PREAMBLE.match(line))]
    if not body:
        body = lines
    parts: list[str] = []
    for line in body:
        if ":" in line:
            prefix, rest = line.split(":", 1)
            if rest.strip() and "," not in prefix:
                line = rest
        parts.append(line)
    return parts


def _split_phrases(parts: list[str], max_words: int) -> list[str]:
    """Candidates from prose lines: a line is a comma/semicolon list only when every piece is
    a short phrase; a sentence that merely contains commas ("A user enjoyed a mix of sci-fi
    films, including ...") stays one (long, hence dropped) candidate. "The user likes A, B,
    and C" loses its lead-in ("The user likes")."""
    candidates: list[str] = []
    for line in parts:
        pieces = [q.strip() for q in re.split(r"[,;]|\s+\|\s+", line)]
        if len(pieces) > 1:
            pieces[0] = _LEAD_IN.sub("", pieces[0]) if len(pieces[0].split()) > 2 else pieces[0]
        if len(pieces) > 1 and all(len(q.split()) <= max_words for q in pieces):
            candidates.extend(pieces)
        else:
            candidates.append(line)
    return candidates


def _find_json(text: str, opener: str | None = None) -> tuple[Any, bool]:
    """The first JSON value starting at a ``[`` or ``{`` that decodes (trailing text ignored);
    falls back to a Python literal (``['a', 'b']``, which small models often write)."""
    decoder = json.JSONDecoder()
    starts = [i for i, ch in enumerate(text) if ch in (opener or "[{")]
    for i in starts:
        try:
            value, _ = decoder.raw_decode(text, i)
            return value, True
        except json.JSONDecodeError:
            pass
        close = "]" if text[i] == "[" else "}"
        end = text.rfind(close)
        while end > i:
            try:
                return ast.literal_eval(text[i : end + 1]), True
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                end = text.rfind(close, i, end)
    return None, False


def parse_json(text: str) -> JsonResult:
    """The first JSON object or array in a generation, e.g. a judge's
    ``{"score": 4, "reason": "..."}``: tolerant of code fences, text before and after it, and
    Python-style quotes.

    Args:
        text: the generated text.

    Returns:
        A :class:`JsonResult`: the value, whether one was found, why not, and the raw text.
    """
    raw = text if isinstance(text, str) else ""
    cleaned, why = _text_or_fail(text, "parse_json")
    if cleaned is None:
        return JsonResult(None, False, why, raw)
    value, found = _find_json(cleaned)
    if not found:
        return JsonResult(None, False, "no JSON object or array found", raw)
    return JsonResult(value, True, "ok", raw)


def parse_json_list(text: str, max_items: int | None = None, *, min_items: int = 1, max_words: int = 8) -> ParseResult:
    """A list of short strings written as JSON (``["a", "b"]``), tolerant of code fences,
    surrounding prose, Python quotes, and an object wrapping one list (``{"tags": [...]}``).
    Numbers become strings; nested objects make the result not ok.

    Args:
        text: the generated text.
        max_items: as for :func:`parse_list`.
        min_items: as for :func:`parse_list`.
        max_words: as for :func:`parse_list`.

    Returns:
        A :class:`ParseResult`.
    """
    raw = text if isinstance(text, str) else ""
    cleaned, why = _text_or_fail(text, "parse_json_list")
    if cleaned is None:
        return ParseResult([], False, why, raw)
    value, found = _find_json(cleaned)
    if found and isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 else value
    if not found or not isinstance(value, list):
        return ParseResult([], False, "no JSON list found", raw)
    if not value:
        return ParseResult([], False, "empty JSON list", raw)
    items = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            return ParseResult([], False, f"not a list of strings: element {i} is {type(v).__name__}", raw)
        items.append(str(v))
    return _finish(items, raw, max_items=max_items, min_items=min_items, max_words=max_words)


@dataclass
class ParseReport:
    """Counts parse failures over a batch of generations, to report them (never to hide them).

    ``report.add(result)`` for each result (or :func:`parse_all`), then ``print(report)``;
    ``report.as_dict()`` goes into a chapter's results JSON.
    """

    name: str = "generations"
    max_examples: int = 5
    n: int = 0
    n_ok: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)  # [{"index", "reason", "text"}] of failures

    def add(self, result, index: int | None = None):
        """Count one :class:`ParseResult`/:class:`JsonResult`; returns it unchanged."""
        if not hasattr(result, "ok") or not hasattr(result, "reason"):
            raise TypeError(f"ParseReport.add takes a ParseResult or JsonResult, got {type(result).__name__}")
        idx = self.n if index is None else index
        self.n += 1
        if result.ok:
            self.n_ok += 1
            return result
        self.reasons[result.reason.split(":")[0]] += 1  # "category: detail" -> category
        if len(self.examples) < self.max_examples:
            self.examples.append({"index": idx, "reason": result.reason, "text": (result.raw or "")[:160]})
        return result

    def extend(self, results: Iterable) -> "ParseReport":
        """Count every result of ``results`` (:meth:`add`); returns the report."""
        for r in results:
            self.add(r)
        return self

    @property
    def n_malformed(self) -> int:
        """How many results were not ok."""
        return self.n - self.n_ok

    @property
    def malformed_rate(self) -> float:
        """The share of results that were not ok (0 when there are none)."""
        return self.n_malformed / self.n if self.n else 0.0

    def summary(self) -> str:
        """One line of counts, then the failure reasons by frequency and a few examples."""
        head = f"{self.name}: {self.n_ok}/{self.n} parsed, {self.n_malformed} malformed ({self.malformed_rate:.1%})"
        if not self.n_malformed:
            return head
        lines = [head] + [f"  {count:4d} x {reason}" for reason, count in self.reasons.most_common()]
        lines += [f"  e.g. #{e['index']} ({e['reason'][:60]}): {e['text'][:100]!r}" for e in self.examples]
        return "\n".join(lines)

    __str__ = summary

    def as_dict(self) -> dict:
        """The counts, reasons and examples as a JSON-ready dict (for a chapter's results)."""
        return {
            "name": self.name,
            "n": self.n,
            "n_ok": self.n_ok,
            "n_malformed": self.n_malformed,
            "malformed_rate": self.malformed_rate,
            "reasons": dict(self.reasons),
            "examples": list(self.examples),
        }


def parse_all(texts: Sequence[str], parser: Callable = parse_list, *, name: str = "generations", **kwargs):
    """Parse every text, counting the failures.

    Args:
        texts: the generated texts.
        parser: :func:`parse_list`, :func:`parse_json_list`, :func:`parse_json` or alike.
        name: the report's name.
        **kwargs: passed to ``parser``.

    Returns:
        (the results in order, the :class:`ParseReport`).
    """
    report = ParseReport(name=name)
    results = [report.add(parser(t, **kwargs), index=i) for i, t in enumerate(texts)]
    return results, report
