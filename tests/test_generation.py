"""Text generation: the local backend on tiny-llama, the HTTP backend against a loopback
server started here, the disk cache, and parsing of messy generations."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from llmrec_lib import backbones as B
from llmrec_lib import generation as G
from tests.conftest import noisy_tiny_llama

PROMPTS = ["hello there", "a much longer prompt about movies, actors and directors", "x", "List 3 genres"]


@pytest.fixture(scope="module")
def tiny():
    return noisy_tiny_llama()


def cfg(**kw) -> G.GenerationConfig:
    return G.GenerationConfig(**{"max_new_tokens": 10, "batch_size": 4, **kw})


# --------------------------------------------------------------------------------------------
# Config and prompts
# --------------------------------------------------------------------------------------------


def test_config_validation_and_cache_fields():
    for bad in ({"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"batch_size": 0}, {"seed": 1.5}):
        with pytest.raises(ValueError, match="GenerationConfig"):
            G.GenerationConfig(**bad)
    greedy = G.GenerationConfig(seed=1, batch_size=2)
    # batch size never changes answers, and greedy decoding ignores the seed and top_p
    assert greedy.cache_fields() == G.GenerationConfig(seed=2, batch_size=64, top_p=0.5).cache_fields()
    assert G.GenerationConfig(temperature=0.7, seed=1).cache_fields() != G.GenerationConfig(temperature=0.7, seed=2).cache_fields()


def test_prompts_become_messages_with_clear_errors():
    assert G.to_messages("hi") == [{"role": "user", "content": "hi"}]
    assert G.to_messages("hi", "be brief")[0] == {"role": "system", "content": "be brief"}
    own_system = [{"role": "system", "content": "A"}, {"role": "user", "content": "q"}]
    assert G.to_messages(own_system, "B") == own_system  # an explicit system message wins
    with pytest.raises(ValueError, match="role"):
        G.to_messages([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="assistant"):
        G.to_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    with pytest.raises(TypeError, match="string or a list"):
        G.to_messages(42)
    gen = G.OpenAIGenerator("http://127.0.0.1:9", "m")
    with pytest.raises(TypeError, match=r"\[prompt\]"):
        gen.generate("a single string")
    with pytest.raises(TypeError, match="one prompt"):
        gen.generate([{"role": "user", "content": "q"}])


# --------------------------------------------------------------------------------------------
# Local backend (tiny-llama)
# --------------------------------------------------------------------------------------------


def test_local_uses_chat_template_or_documented_fallback(tiny):
    gen = G.LocalGenerator(tiny, config=cfg())
    assert tiny.tokenizer.chat_template is None  # the byte tokenizer has none: ChatML fallback
    text = gen.render(G.to_messages("hi", "sys"))
    assert text == "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_local_greedy_shapes_determinism_and_batch_invariance(tiny):
    gen = G.LocalGenerator(tiny, config=cfg(), use_autocast=False)
    out = gen.generate(PROMPTS, progress=False)
    assert len(out) == len(PROMPTS) and all(isinstance(t, str) for t in out)
    assert len(set(out)) == len(PROMPTS)  # different prompts, different answers
    assert all(n <= 10 for n in gen.last_new_tokens) and gen.last_hit_limit == len(PROMPTS)
    assert gen.generate(PROMPTS, progress=False) == out  # greedy is deterministic
    # left padding: each prompt alone gives what it gave inside the padded batch
    alone = [gen.generate([p], progress=False)[0] for p in PROMPTS]
    assert alone == out
    # bf16 autocast (the default) on this model gives the same answers in batch and alone too
    fast = G.LocalGenerator(tiny, config=cfg())
    assert fast.generate(PROMPTS, progress=False) == [fast.generate([p], progress=False)[0] for p in PROMPTS]
    assert tiny.tokenizer.padding_side == "right"  # the backbone's setting is restored
    # max_new_tokens is respected (the byte tokenizer makes one token per byte)
    short = gen.generate(PROMPTS, config=cfg(max_new_tokens=3), progress=False)
    assert all(n <= 3 for n in gen.last_new_tokens)
    assert [s for s in short] == [o[: len(s)] for o, s in zip(out, short)]  # a prefix of the longer answer


class _OnlyVowels:
    """A test constraint: the answer may hold the bytes of "aeiou" only (and the EOS token)."""

    def __init__(self, tokenizer):
        self.ok = {tokenizer.convert_tokens_to_ids(c) for c in "aeiou"} | {tokenizer.eos_token_id}

    def allows(self, generated, token):
        return token in self.ok


G.register_constraint("test-only-vowels/v1", _OnlyVowels)


def test_constraint_is_applied_keyed_and_checked(tiny):
    free = G.LocalGenerator(tiny, config=cfg(), use_autocast=False).generate(PROMPTS, progress=False)
    assert any(set(t) - set("aeiou") for t in free)  # unconstrained, this model writes other bytes
    gen = G.LocalGenerator(tiny, config=cfg(constraint="test-only-vowels/v1"), use_autocast=False)
    out = gen.generate(PROMPTS, progress=False)
    assert all(t and set(t) <= set("aeiou") for t in out), out
    # the constraint is part of the cache key; an unset one leaves old keys as they were
    assert "constraint" not in cfg().cache_fields()
    assert cfg(constraint="test-only-vowels/v1").cache_fields() != cfg().cache_fields()
    with pytest.raises(ValueError, match="unknown decoding constraint"):
        gen.generate(PROMPTS, config=cfg(constraint="nope/v1"), progress=False)
    with pytest.raises(ValueError, match="already registered"):
        G.register_constraint("test-only-vowels/v1", lambda tok: None)
    with pytest.raises(ValueError, match="local backend"):
        G.OpenAIGenerator("http://localhost:1", "m")._payload([], cfg(constraint="test-only-vowels/v1"))


def test_constrained_processor_walks_down_to_the_best_allowed_token():
    class Odd:
        def allows(self, generated, token):
            return token % 2 == 1

    scores = torch.tensor([[0.0, 5.0, 9.0, 1.0], [3.0, 2.0, 8.0, 1.0], [9.0, 0.0, 0.0, 0.0]])
    ids = torch.tensor([[7, 7], [7, 7], [7, 0]])  # row 3 has finished (EOS id 0)
    out = G._Constrained(Odd(), prompt_len=1, eos_ids=[0])(ids, scores.clone())
    assert out.argmax(-1).tolist() == [1, 1, 0]  # rows 1-2: the best odd token; row 3 untouched
    assert out[0, 2] == float("-inf") and out[0, 3] == 1.0  # only refused tokens above it are barred
    # a refused token that ties with the best allowed one is barred too: greedy decoding would
    # break the tie by the lower id (bf16 logits tie often)
    tied = torch.tensor([[7.0, 7.0, 1.0, 0.0], [7.0, 7.0, 7.0, 0.0]])
    out = G._Constrained(Odd(), prompt_len=1, eos_ids=[0])(torch.tensor([[7, 7], [7, 7]]), tied)
    assert out.argmax(-1).tolist() == [1, 1]
    assert out[0, 0] == out[1, 0] == out[1, 2] == float("-inf") and out[1, 1] == 7.0


def test_next_token_logprobs_reads_the_greedy_answer_at_the_asked_step(tiny):
    gen = G.LocalGenerator(tiny, config=cfg(batch_size=2), use_autocast=False)
    tok = tiny.tokenizer
    ids = [tok.convert_tokens_to_ids(c) for c in "ae "]
    refs = []  # by hand: three greedy steps of plain, unpadded forward passes per prompt
    for p in PROMPTS:
        x = tok(gen.render(G.to_messages(p)), add_special_tokens=False)["input_ids"]
        for step in range(4):  # the fourth pass reads the distribution after three tokens
            with torch.inference_mode():
                logits = tiny.model(input_ids=torch.tensor([x])).logits[0, -1].float()
            x = x + [int(logits.argmax())] * (step < 3)
        refs.append((tok.decode(x[-3:], skip_special_tokens=True), torch.log_softmax(logits, -1)))
    # this noisy model writes arbitrary bytes: only answers that decode to clean text are
    # unambiguous points to stop at (one is the first prompt's, batched beside a longer one)
    clean = [i for i, (h, _) in enumerate(refs) if h.isascii() and h.isprintable()]
    assert 0 in clean
    heads, logp = gen.next_token_logprobs(PROMPTS, ids, lambda so_far, nxt: so_far in {refs[i][0] for i in clean},
                                          progress=False)
    for i in clean:  # greedy, batched with left padding as generate() is, read at the right step
        assert heads[i] == refs[i][0]
        assert np.allclose(logp[i], refs[i][1][ids].numpy(), atol=1e-4), (logp[i], refs[i][1][ids])
    never, nan = gen.next_token_logprobs(PROMPTS[:1], ids, lambda so_far, nxt: False, max_new_tokens=4,
                                         progress=False)
    assert never == [None] and np.isnan(nan).all()


def test_prompt_states_are_what_the_lm_head_reads_for_the_first_answer_token(tiny):
    gen = G.LocalGenerator(tiny, config=cfg(batch_size=2), use_autocast=False)
    tok = tiny.tokenizer
    states = gen.prompt_states(PROMPTS, progress=False)
    assert states.shape == (len(PROMPTS), tiny.model.config.hidden_size) and states.dtype == np.float32
    head = tiny.model.get_output_embeddings()
    for i, p in enumerate(PROMPTS):  # by hand: one plain, unpadded forward per prompt
        x = tok(gen.render(G.to_messages(p)), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            want = tiny.model(input_ids=torch.tensor([x])).logits[0, -1].float()
            got = head(torch.from_numpy(states[i])).float()
        # batched beside a longer prompt (left-padded), the row still reads as it does alone
        assert torch.allclose(got, want, atol=1e-4), (i, (got - want).abs().max())
    assert np.allclose(gen.prompt_states(PROMPTS[::-1], progress=False), states[::-1], atol=1e-5)
    with pytest.raises(ValueError, match="at least one prompt"):
        gen.prompt_states([], progress=False)


def test_local_sampling_is_seeded_per_prompt(tiny):
    gen = G.LocalGenerator(tiny, config=cfg(temperature=1.0, top_p=0.9, seed=7), use_autocast=False)
    batch = gen.generate(PROMPTS + PROMPTS[:1], progress=False)
    assert batch[-1] == batch[0]  # same prompt, same seed: same sample, wherever it sits
    alone = [gen.generate([p], progress=False)[0] for p in PROMPTS]
    assert alone == batch[: len(PROMPTS)]  # the neighbours in a batch do not change a sample
    greedy = G.LocalGenerator(tiny, config=cfg(), use_autocast=False).generate(PROMPTS, progress=False)
    assert batch[: len(PROMPTS)] != greedy
    other_seed = gen.generate(PROMPTS, config=cfg(temperature=1.0, top_p=0.9, seed=8), progress=False)
    assert other_seed != batch[: len(PROMPTS)]


def test_local_stops_at_eos_and_reports_empty_answer():
    backbone = B.load_backbone("tiny-llama", device="cpu")
    bias = torch.zeros(len(backbone.tokenizer))
    bias[backbone.tokenizer.eos_token_id] = 1e4  # EOS becomes the best next token everywhere
    hook = backbone.model.lm_head.register_forward_hook(lambda module, inputs, out: out + bias)
    try:
        gen = G.LocalGenerator(backbone, config=cfg(max_new_tokens=5), use_autocast=False)
        out = gen.generate(["hi", "hello"], progress=False)
    finally:
        hook.remove()
    assert out == ["", ""] and gen.last_new_tokens == [0, 0] and gen.last_hit_limit == 0
    # an empty answer is possible; parsing reports it instead of returning [] silently
    result = G.parse_list(out[0])
    assert not result.ok and result.reason == "empty output"


def test_local_rejects_too_long_prompts(tiny):
    gen = G.LocalGenerator(tiny, config=cfg(max_new_tokens=10))
    with pytest.raises(ValueError, match="exceeds the model's 2048 positions"):
        gen.generate(["x" * 2100], progress=False)
    with pytest.raises(ValueError, match="exceeds the model's 2048 positions"):
        gen.next_token_logprobs(["x" * 2100], [0], lambda so_far, nxt: True, progress=False)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft calls a deprecated transformers API
def test_adapter_changes_identity_and_answers(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = G.LocalGenerator(tiny, config=cfg(), use_autocast=False)
    base_out, base_id = base.generate(PROMPTS, progress=False), base.identity
    donor = B.load_backbone("tiny-llama", device="cpu")
    lora = get_peft_model(donor.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    fresh = B.load_backbone("tiny-llama", device="cpu")
    with torch.no_grad():  # the same weights as the fixture
        for p, q in zip(fresh.model.parameters(), tiny.model.parameters()):
            p.copy_(q)
    adapted = G.LocalGenerator(fresh, str(tmp_path / "adapter"), config=cfg(), use_autocast=False)
    assert adapted.identity != base_id and "+adapter#" in adapted.identity and str(tmp_path) not in adapted.identity
    assert adapted.generate(PROMPTS, progress=False) != base_out
    import shutil  # the same adapter in a moved project: the same identity, so its cache still hits

    shutil.copytree(tmp_path / "adapter", tmp_path / "moved" / "adapter")
    again = B.load_backbone("tiny-llama", device="cpu")
    with torch.no_grad():
        for p, q in zip(again.model.parameters(), tiny.model.parameters()):
            p.copy_(q)
    moved = G.LocalGenerator(again, str(tmp_path / "moved" / "adapter"), config=cfg(), use_autocast=False)
    assert moved.identity == adapted.identity
    with pytest.raises(OSError, match="adapter_config.json"):
        G.LocalGenerator(B.load_backbone("tiny-llama", device="cpu"), str(tmp_path / "missing"))


# --------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP backend, against a loopback server
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        model = body["model"]
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": "not found"}')
        if model == "broken-500":
            return self._send(500, b'{"error": "model crashed"}')
        if model == "broken-json":
            return self._send(200, b"<html>proxy error</html>")
        if model == "no-choices":
            return self._send(200, json.dumps({"object": "error"}).encode())
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        text = f"  echo[{model}|{system[0] if system else '-'}|t={body['temperature']}]: {user}\n"
        reply = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        self._send(200, json.dumps(reply).encode())

    def _send(self, code: int, payload: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_round_trip(server):
    _Handler.requests.clear()
    gen = G.OpenAIGenerator(server + "/v1/", "tiny", api_key="k", config=cfg(batch_size=3, system_prompt="S"))
    prompts = ["a", "b", [{"role": "system", "content": "own"}, {"role": "user", "content": "c"}], "d"]
    out = gen.generate(prompts, progress=False)
    assert out == ["echo[tiny|S|t=0.0]: a", "echo[tiny|S|t=0.0]: b", "echo[tiny|own|t=0.0]: c", "echo[tiny|S|t=0.0]: d"]
    assert all(r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer k" for r in _Handler.requests)
    assert _Handler.requests[0]["body"]["max_tokens"] == 10 and "seed" not in _Handler.requests[0]["body"]
    _Handler.requests.clear()
    gen.generate(["a", "a"], config=cfg(temperature=0.5, seed=3), progress=False)
    seeds = [r["body"]["seed"] for r in _Handler.requests]
    assert seeds[0] == seeds[1]  # per-prompt seeds, sent along for servers that honour them
    assert gen.identity == f"openai:tiny@{server}"


def test_openai_backend_errors_say_what_to_do(server):
    with pytest.raises(G.GenerationServerError, match=r"HTTP 500.*model crashed"):
        G.OpenAIGenerator(server, "broken-500").generate(["q"], progress=False)
    with pytest.raises(G.GenerationServerError, match="not JSON.*OpenAI-compatible"):
        G.OpenAIGenerator(server, "broken-json").generate(["q"], progress=False)
    with pytest.raises(G.GenerationServerError, match="choices"):
        G.OpenAIGenerator(server, "no-choices").generate(["q"], progress=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(G.GenerationServerError, match="Is the server running"):
        G.OpenAIGenerator(f"http://127.0.0.1:{dead}", "m", timeout=2).generate(["q"], progress=False)
    with pytest.raises(ValueError, match="http"):
        G.OpenAIGenerator("localhost:8000", "m")


def test_load_generator_picks_the_backend_from_arguments_or_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LLMREC_LLM_BASE_URL", server)
    monkeypatch.setenv("LLMREC_LLM_MODEL", "served")
    gen = G.load_generator(config=cfg())
    assert isinstance(gen, G.CachedGenerator) and isinstance(gen.inner, G.OpenAIGenerator)
    assert gen.generate(["q"], progress=False) == ["echo[served|-|t=0.0]: q"]
    assert gen.path.parent == tmp_path / "generations" and gen.path.is_file()
    monkeypatch.delenv("LLMREC_LLM_MODEL")
    with pytest.raises(ValueError, match="model name"):
        G.load_generator()
    monkeypatch.delenv("LLMREC_LLM_BASE_URL")
    local = G.load_generator("tiny-llama", config=cfg(max_new_tokens=2), cache=False)
    assert isinstance(local, G.LocalGenerator) and local.identity.startswith("local:tiny-llama#")


# --------------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------------


class _Counting(G.Generator):
    """A deterministic fake backend that counts what it is asked to generate."""

    def __init__(self, name="fake"):
        self.config = cfg(batch_size=2)
        self.name = name
        self.calls: list[str] = []

    @property
    def identity(self):
        return f"fake:{self.name}"

    def _generate(self, messages, cfg, progress):
        self.calls += [m[-1]["content"] for m in messages]
        return [f"{self.name}:{m[-1]['content']}:{cfg.max_new_tokens}" for m in messages]


def test_cache_hits_misses_and_config_changes(tmp_path):
    inner = _Counting()
    gen = G.CachedGenerator(inner, tmp_path)
    out = gen.generate(["a", "b", "a", "c"], progress=False)
    assert out == ["fake:a:10", "fake:b:10", "fake:a:10", "fake:c:10"]
    assert sorted(inner.calls) == ["a", "b", "c"]  # the duplicate was generated once
    assert (gen.last_misses, gen.last_hits) == (3, 1)
    inner.calls.clear()
    assert gen.generate(["c", "a", "b"], progress=False) == ["fake:c:10", "fake:a:10", "fake:b:10"]
    assert inner.calls == [] and (gen.last_misses, gen.last_hits) == (0, 3)
    gen.generate(["a", "d"], progress=False)  # a changed prompt misses
    assert inner.calls == ["d"]
    inner.calls.clear()
    assert gen.generate(["a"], config=cfg(max_new_tokens=5), progress=False) == ["fake:a:5"]
    assert inner.calls == ["a"]  # a changed config misses
    inner.calls.clear()
    gen.generate(["a"], config=cfg(batch_size=7), progress=False)
    assert inner.calls == []  # batch size does not change answers, so it hits
    gen.generate([[{"role": "system", "content": "S"}, {"role": "user", "content": "a"}]], progress=False)
    assert inner.calls == ["a"]  # a system prompt is part of the prompt
    other = G.CachedGenerator(_Counting("other"), tmp_path)
    assert other.generate(["a"], progress=False) == ["other:a:10"]  # another model misses
    assert gen.stats["hits"] + gen.stats["misses"] == 4 + 3 + 2 + 1 + 1 + 1


def test_cache_survives_a_new_process_and_a_killed_write(tmp_path):
    gen = G.CachedGenerator(_Counting(), tmp_path)
    gen.generate(["a", "b", "c"], progress=False)
    with open(gen.path, "ab") as f:  # a run killed mid-write leaves half a line
        f.write(b'{"key": "dead", "te')
    code = f"""
import sys
sys.path.insert(0, {str(B.config.PROJECT_ROOT)!r})
from llmrec_lib import generation as G
sys.path.insert(0, {str(B.config.PROJECT_ROOT / 'tests')!r})
from test_generation import _Counting
inner = _Counting()
gen = G.CachedGenerator(inner, {str(tmp_path)!r})
print(gen.generate(["a", "b", "c", "d"], progress=False), inner.calls, gen.n_corrupt)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['fake:a:10', 'fake:b:10', 'fake:c:10', 'fake:d:10'] ['d'] 1"
    # the new record was written on a fresh line, so a third reader sees all four
    third = G.CachedGenerator(_Counting(), tmp_path)
    assert third.generate(["a", "b", "c", "d"], progress=False) and third.last_misses == 0
    assert third.n_corrupt == 1


def test_cache_keeps_finished_batches_when_a_run_dies(tmp_path):
    class Dies(_Counting):
        def _generate(self, messages, cfg, progress):
            if any(m[-1]["content"] == "boom" for m in messages):
                raise KeyboardInterrupt
            return super()._generate(messages, cfg, progress)

    gen = G.CachedGenerator(Dies(), tmp_path)  # batch_size 2: [a, b] finish, [boom] dies
    with pytest.raises(KeyboardInterrupt):
        gen.generate(["a", "b", "boom"], progress=False)
    inner = _Counting()
    again = G.CachedGenerator(inner, tmp_path)
    again.generate(["a", "b"], progress=False)
    assert inner.calls == [] and again.last_hits == 2


def test_cache_with_local_generator_identity_tracks_weights(tiny, tmp_path):
    backbone = B.load_backbone("tiny-llama", device="cpu")
    gen = G.CachedGenerator(G.LocalGenerator(backbone, config=cfg(max_new_tokens=4)), tmp_path)
    first = gen.generate(PROMPTS[:2], progress=False)
    assert gen.generate(PROMPTS[:2], progress=False) == first and gen.last_misses == 0
    fingerprint = gen.inner._fp
    assert gen.identity == gen.inner.identity and gen.inner._fp is fingerprint  # memoised
    with torch.no_grad():  # "fine-tuning" changes the weights: the cache must not answer
        backbone.model.lm_head.weight.mul_(1.5)
    gen.generate(PROMPTS[:2], progress=False)
    assert gen.last_misses == 2


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

MESSY = [
    # (generated text, expected items, ok)
    ("Here are three short tags:\n1. Space opera\n2. Heist thriller\n3. Coming-of-age", ["Space opera", "Heist thriller", "Coming-of-age"], True),
    ("Sure! Based on the history, the user likes:\n- **Sci-Fi** - they watched Alien\n- Comedy\n- Drama\n\nI hope this helps!", ["Sci-Fi", "Comedy", "Drama"], True),
    ("Genres: Action, Comedy, and Drama.", ["Action", "Comedy", "Drama"], True),
    ("1. Action 2. Comedy 3. Drama", ["Action", "Comedy", "Drama"], True),
    ('```json\n["action", "Action", "thriller"]\n```\nThese fit the user.', ["action", "thriller"], True),
    ("['noir', 'crime']", ["noir", "crime"], True),
    ("Action\nComedy\nAction\nAction", ["Action", "Comedy"], True),
    ("1) Romance (many rom-coms)\n2) Musicals: because of La La Land", ["Romance", "Musicals"], True),
    ("Horror", ["Horror"], True),
    ("", [], False),
    ("   \n ", [], False),
    ("I'm sorry, but I cannot determine the user's preferences from this list.", [], False),
    ("The user seems to enjoy movies that have complex characters and morally ambiguous stories.", [], False),
    ("The user likes Action, Comedy, and Drama.", ["Action", "Comedy", "Drama"], True),
    # Three real SmolLM2-135M-Instruct answers (greedy, max_new_tokens=40), cut off mid-way:
    # a list of the wrong kind is still a list (the parser cannot know what was meant),
    ("Here are the movie genres this user likes:\n\n1. Toy Story (1995)\n2. The Matrix (1999)\n3. Star Wars (197",
     ["Toy Story", "The Matrix", "Star Wars"], True),
    # but a sentence with commas is not a list, and neither is JSON cut off by the token limit.
    ("A user enjoyed a mix of action-packed sci-fi films, including Toy Story, The Matrix, and Alien, "
     "but their interests were more diverse, with a mix of fantasy, horror, and", [], False),
    ('```json\n{\n    "genres": [\n        {\n            "name": "Action",\n            "genres": [\n'
     '                {\n                    "name": "Comedy",\n                    "genres":', [], False),
]


@pytest.mark.parametrize("text,items,ok", MESSY)
def test_parse_list_on_messy_outputs(text, items, ok):
    result = G.parse_list(text)
    assert result.ok == ok, result
    assert result.items == items
    assert result.raw == text
    if not ok:
        assert result.reason and result.reason != "ok"


def test_parse_list_limits_and_report():
    assert G.parse_list("a, b, c, d", max_items=3).items == ["a", "b", "c"]
    few = G.parse_list("Action, Action", min_items=3)
    assert not few.ok and few.items == ["Action"] and "expected at least 3" in few.reason
    assert not G.parse_list(None).ok
    with pytest.raises(ValueError, match="max_items"):
        G.parse_list("a", max_items=0)
    results, report = G.parse_all([t for t, _, _ in MESSY], G.parse_list, name="tags")
    expected_bad = sum(not ok for _, _, ok in MESSY)
    assert (report.n, report.n_malformed) == (len(MESSY), expected_bad) and report.n_ok == len(MESSY) - expected_bad
    assert dict(report.reasons) == {"empty output": 2, "refusal": 1, "no short items": 2, "malformed JSON": 1}
    assert len(report.examples) == min(expected_bad, report.max_examples)
    summary = str(report)
    assert summary.startswith(f"tags: {len(MESSY) - expected_bad}/{len(MESSY)} parsed, {expected_bad} malformed")
    assert "empty output" in summary
    assert json.loads(json.dumps(report.as_dict()))["n_malformed"] == expected_bad


def test_parse_json_list_and_parse_json():
    assert G.parse_json_list('Sure: {"tags": ["a", "b"]} done').items == ["a", "b"]
    assert G.parse_json_list("```\n[1, 2]\n```").items == ["1", "2"]
    assert G.parse_json_list("[]").reason == "empty JSON list"
    assert G.parse_json_list('[{"a": 1}]').reason.startswith("not a list of strings")
    assert G.parse_json_list("no list here").reason == "no JSON list found"
    assert not G.parse_json_list('["a", "b"').ok  # truncated by max_new_tokens
    judged = G.parse_json('```json\n{"score": 4, "reason": "fits [the] user"}\n``` trailing')
    assert judged.ok and judged.value == {"score": 4, "reason": "fits [the] user"}
    assert not G.parse_json("score: 4").ok
    _, report = G.parse_all(["[1]", "{", ""], G.parse_json)
    assert (report.n_ok, report.n_malformed) == (1, 2)
