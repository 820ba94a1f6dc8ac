"""LoRA supervised fine-tuning on the tiny random Llama: masking, learning, resuming, saving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmrec_lib import generation as G
from llmrec_lib import sft
from tests.conftest import noisy_tiny_llama

EXAMPLES = [("Say cat.", "cat"), ("Say dog.", "dog"), ("Say owl.", "owl"), ("Say fox.", "fox")]


def fresh():
    return noisy_tiny_llama()


def cfg(**kw):
    return sft.SFTConfig(**{"steps": 8, "batch_size": 2, "lr": 1e-2, "warmup": 1, "lora_r": 4,
                            "lora_alpha": 8, "save_every": 2, "max_len": 128, "use_autocast": False, **kw})


def test_encode_masks_the_prompt_and_ends_with_eos(tiny):
    tok = tiny.tokenizer
    ids, labels = sft.encode_example(tok, "Say cat.", "cat")
    n_answer = sum(lab != sft.IGNORE for lab in labels)
    answer_ids = tok("cat", add_special_tokens=False)["input_ids"]
    assert n_answer == len(answer_ids) + 1 and ids[-1] == tok.eos_token_id
    assert labels[-n_answer:] == ids[-n_answer:] and set(labels[:-n_answer]) == {sft.IGNORE}
    # the prompt part is exactly what LocalGenerator renders for generation
    rendered = G.LocalGenerator(tiny, config=G.GenerationConfig(max_new_tokens=2)).render(G.to_messages("Say cat."))
    assert ids[: len(ids) - n_answer] == tok(rendered, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="max_len"):
        sft.encode_example(tok, "x" * 200, "cat", max_len=50)
    with pytest.raises(ValueError, match="empty answer"):
        sft.encode_example(tok, "Say cat.", " ")


def test_collate_pads_right_without_labels(tiny):
    a = sft.encode_example(tiny.tokenizer, "Say cat.", "cat")
    b = sft.encode_example(tiny.tokenizer, "Say a longer thing.", "longer")
    out = sft.collate([a, b], pad_id=2)
    assert out["input_ids"].shape[1] == max(len(a[0]), len(b[0]))
    short = 0 if len(a[0]) < len(b[0]) else 1
    n = len([a, b][short][0])
    assert (out["attention_mask"][short, n:] == 0).all() and (out["labels"][short, n:] == sft.IGNORE).all()


def test_batches_are_a_function_of_seed_and_step():
    seen = np.concatenate([sft.batch_indices(10, 3, 0, s) for s in range(10)])  # 3 epochs
    for epoch in range(3):
        assert sorted(seen[epoch * 10 : epoch * 10 + 10]) == list(range(10))  # each epoch: every example once
    assert (sft.batch_indices(10, 3, 0, 7) == sft.batch_indices(10, 3, 0, 7)).all()
    assert not (sft.batch_indices(10, 3, 0, 0) == sft.batch_indices(10, 3, 1, 0)).all()


def test_loss_from_the_answer_span_equals_the_loss_over_every_position(tmp_path):
    # prompts of different lengths, so the batch's earliest answer is not every row's
    ex = [("Say cat.", "cat"), ("Say a much longer thing, please, in full.", "a long answer")]
    t = sft.SFTTrainer(fresh(), ex, cfg(batch_size=2), tmp_path, progress=False)
    b = sft.collate(t.encoded, t.backbone.pad_token_id)
    logits = t.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    whole = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                              b["labels"][:, 1:].reshape(-1), ignore_index=sft.IGNORE)
    torch.testing.assert_close(t.loss(b), whole, rtol=1e-5, atol=1e-6)
    b["labels"][0, -1] = 7  # a wrong label in the span changes the loss: it is read
    assert not torch.isclose(t.loss(b), whole)


def test_training_lowers_the_answer_loss(tmp_path):
    bb = fresh()
    before = sft.answer_loss(bb, bb.tokenizer, EXAMPLES, use_autocast=False)
    t = sft.SFTTrainer(bb, EXAMPLES, cfg(steps=30, save_every=30, lr=2e-2), tmp_path, progress=False).train()
    after = sft.answer_loss(t.model, bb.tokenizer, EXAMPLES, use_autocast=False)
    assert after < 0.25 * before, (before, after)  # measured: 6.5 -> 0.38
    assert t.state.step == 30 and len(t.state.history) == 30
    assert t.n_trainable < sum(p.numel() for p in bb.model.parameters()) / 5  # only LoRA trains


def test_resume_continues_exactly(tmp_path):
    whole = sft.SFTTrainer(fresh(), EXAMPLES, cfg(), tmp_path / "a", progress=False).train()
    first = sft.SFTTrainer(fresh(), EXAMPLES, cfg(), tmp_path / "b", progress=False).train(stop_at=4)
    assert first.state.step == 4 and (tmp_path / "b" / "checkpoint" / "adapter.safetensors").is_file()
    second = sft.SFTTrainer(fresh(), EXAMPLES, cfg(), tmp_path / "b", progress=False).train()
    assert second.resumed_from == 4 and [h["step"] for h in second.state.history] == list(range(1, 9))
    a, b = whole._adapter_state(), second._adapter_state()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="another config"):
        sft.SFTTrainer(fresh(), EXAMPLES, cfg(lr=5e-3), tmp_path / "b", progress=False).train()


def test_saved_adapter_is_bf16_safetensors_and_generates(tmp_path):
    from safetensors.torch import load_file

    t = sft.SFTTrainer(fresh(), EXAMPLES, cfg(steps=4), tmp_path / "run", progress=False).train()
    path = t.save_adapter(tmp_path / "adapter", meta={"command": "test"})
    weights = load_file(str(path / "adapter_model.safetensors"))
    assert weights and all(v.dtype == torch.bfloat16 for v in weights.values())
    assert json.loads((path / "sft.json").read_text())["meta"]["command"] == "test"
    gen = G.LocalGenerator(fresh(), adapter_id=str(path), config=G.GenerationConfig(max_new_tokens=4))
    assert isinstance(gen.generate(["Say cat."], progress=False)[0], str)
    assert "adapter" in gen.identity
    assert json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-llama"
    assert not (path / "README.md").exists()


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        sft.SFTConfig(steps=0)
    with pytest.raises(ValueError, match="warmup"):
        sft.SFTConfig(steps=5, warmup=5)
    with pytest.raises(ValueError, match="causal LM"):
        sft.SFTTrainer(object(), EXAMPLES, cfg(), tmp_path / "unused")


def test_init_adapter_continues_a_saved_adapter(tmp_path):
    first = sft.SFTTrainer(fresh(), EXAMPLES, cfg(steps=30, save_every=30, lr=2e-2), tmp_path / "a",
                           progress=False).train()
    saved = first.save_adapter(tmp_path / "adapter", dtype=torch.float32)
    bb = fresh()
    cont = sft.SFTTrainer(bb, EXAMPLES, cfg(), tmp_path / "b", progress=False, init_adapter=saved)
    start = sft.answer_loss(cont.model, bb.tokenizer, EXAMPLES, use_autocast=False)
    trained = sft.answer_loss(first.model, bb.tokenizer, EXAMPLES, use_autocast=False)
    assert start == pytest.approx(trained, rel=1e-4)  # the continued run starts where the first ended
    assert cont.data_fingerprint.endswith("+" + sft.adapter_fingerprint(saved))
    with pytest.raises(ValueError, match="r=4"):
        sft.SFTTrainer(fresh(), EXAMPLES, cfg(lora_r=8), tmp_path / "c", progress=False, init_adapter=saved)
    with pytest.raises(FileNotFoundError, match="holds no adapter"):
        sft.SFTTrainer(fresh(), EXAMPLES, cfg(), tmp_path / "d", progress=False, init_adapter=tmp_path)


def test_fit_resumes_in_a_folder_per_start(tmp_path):
    base = sft.run_dir_for(tmp_path, cfg(), EXAMPLES)
    assert base == sft.run_dir_for(tmp_path, cfg(), list(EXAMPLES))
    assert base != sft.run_dir_for(tmp_path, cfg(), EXAMPLES, start="abc")
    assert base != sft.run_dir_for(tmp_path, cfg(lr=5e-3), EXAMPLES)
