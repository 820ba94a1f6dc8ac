"""LoRA SFT step time: logits for the answer span only, against logits at every position.

Not a test: prints a table. ``sft.SFTTrainer.loss`` projects onto SmolLM2's 49,152-word
vocabulary only the positions from a batch's earliest answer token on (``logits_to_keep``);
the prompt's positions carry no label. The baseline below is the loss as it was computed
before (logits at every position, then the prompt masked out). Both losses are printed, so the
table also shows that they agree. The batches are real: chapter 07's v4 prompts for test users
(committed interests, the prompt the tag model reads) and v4's committed answers.

    LLMREC_DATA_DIR=../shared/data/ml-latest-small .venv/bin/python benchmarks/bench_sft.py [--steps 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from llmrec_lib import backbones, config, recgpt, sft
from llmrec_lib.recgpt import tagger


def every_position_loss(trainer: sft.SFTTrainer, batch: dict) -> torch.Tensor:
    """The baseline: logits at every position, the prompt masked by its labels."""
    with config.autocast("cpu", enabled=trainer.cfg.use_autocast):
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=sft.IGNORE)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="timed steps per loss (after 1 warm-up step)")
    args = ap.parse_args()

    setting = recgpt.build_setting()
    var = tagger.VARIANTS["v4"]
    run = recgpt.artifacts_dir() / var.out / "tags.jsonl"
    interests = tagger.load_tags("test", field="interests")
    answers = tagger.load_tags("test", run, field="text")
    users = sorted(set(interests) & set(answers))[:8]
    prompts = tagger.stage_prompts(setting, "test", users, var, interests)
    examples = [(p, answers[u]) for p, u in zip(prompts, users)]
    bb = backbones.load_backbone("smollm2-135m", device="cpu")
    cfg = sft.SFTConfig(steps=1, warmup=0, batch_size=8, max_len=var.max_len, use_autocast=config.bf16_is_fast("cpu"))
    with tempfile.TemporaryDirectory() as out:
        t = sft.SFTTrainer(bb, examples, cfg, out, progress=False)
        batch = sft.collate(t.encoded, bb.pad_token_id)
        t.model.train()  # as SFTTrainer.train runs its steps
        scored = int((batch["labels"] != sft.IGNORE).sum())
        print(f"batch: {tuple(batch['input_ids'].shape)} tokens, {scored} of them answer tokens; "
              f"bf16 autocast {'on' if cfg.use_autocast else 'off'}; {torch.get_num_threads()} threads")
        rows = {}
        for name, fn in (("every position", lambda b: every_position_loss(t, b)), ("answer span", t.loss)):
            times = []
            for i in range(args.steps + 1):
                t0 = time.perf_counter()
                loss = fn(batch)
                loss.backward()
                t.model.zero_grad(set_to_none=True)
                if i:  # the first step warms up
                    times.append(time.perf_counter() - t0)
            rows[name] = (sorted(times)[len(times) // 2], loss.item())
    print(f"{'logits':16s} {'s/step (median)':>16s} {'loss':>8s}")
    for name, (sec, loss) in rows.items():
        print(f"{name:16s} {sec:16.2f} {loss:8.4f}")
    print(f"speed-up: {rows['every position'][0] / rows['answer span'][0]:.2f}x")


if __name__ == "__main__":
    main()
