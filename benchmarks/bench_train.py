"""Dual-encoder training throughput: pairs/s and model FLOPs utilisation (MFU).

Not a test: prints a table. The denominator of MFU is the matmul peak measured in the same
run, on the same machine, in the dtype each setting runs in, so the ratio is comparable across
machines. On a CPU without bf16 instructions (``config.bf16_is_fast``) autocast is off, so the
"bf16 autocast" rows would repeat the float32 one: they are left out, and so is the bf16 peak
(emulated bf16 runs a 2048-square matmul for about a minute).

    LLMREC_DATA_DIR=../shared/data/ml-latest-small .venv/bin/python benchmarks/bench_train.py [--steps 8]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from llmrec_lib import config, recipes, train
from llmrec_lib.encoders import DualEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting (after 3 warm-up steps)")
    args = ap.parse_args()

    bf16 = config.bf16_is_fast("cpu")
    peak_bf16 = train.matmul_peak_gflops(torch.bfloat16) if bf16 else float("nan")
    peak_fp32 = train.matmul_peak_gflops(torch.float32)
    print(f"matmul peak: bf16 {peak_bf16:.0f} GFLOP/s, fp32 {peak_fp32:.0f} GFLOP/s "
          f"({torch.get_num_threads()} threads; bf16 autocast {'on' if bf16 else 'off: no bf16 instructions'})")
    setting = recipes.build_setting()
    pairs = train.training_pairs(setting.split.train)
    enc0, tr0 = recipes.recipe("infonce", "quick")
    rows = []
    for label, enc, bs, autocast in [
        ("SmolLM2 8 layers, bf16 autocast", enc0, 16, True),
        ("SmolLM2 8 layers, bf16 autocast", enc0, 32, True),
        ("SmolLM2 8 layers, float32", enc0, 16, False),
        ("MiniLM (6 layers), bf16 autocast", dataclasses.replace(enc0, backbone="minilm-l6", n_layers=None), 32, True),
    ]:
        if autocast and not bf16:
            continue
        model = DualEncoder(enc)
        cfg = dataclasses.replace(tr0, batch_size=bs, steps=args.steps + 3, use_autocast=autocast)
        t = train.Trainer(model, pairs, setting.item_text, setting.history_text, cfg, progress=False)
        t.fit()  # the first 3 steps are warm-up, left out of throughput()
        u = train.utilisation(t, peak_bf16 if autocast else peak_fp32)
        rows.append((label, bs, u["seconds_per_step"], u["pairs_per_second"], u["achieved_gflops"], u["mfu"]))
    print(f"{'setting':36s} {'batch':>5s} {'s/step':>7s} {'pairs/s':>8s} {'GFLOP/s':>8s} {'MFU':>6s}")
    for label, bs, per_step, pps, gf, mfu in rows:
        print(f"{label:36s} {bs:5d} {per_step:7.2f} {pps:8.1f} {gf:8.1f} {mfu:6.1%}")


if __name__ == "__main__":
    main()
