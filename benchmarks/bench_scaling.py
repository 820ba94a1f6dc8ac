"""Data-parallel training throughput: the book's trainer under torchrun, 1 vs N processes.

Run:  .venv/bin/python benchmarks/bench_scaling.py [--procs 1 2] [--steps 8] [--global-batch 16] [--n-layers 4]

Every run trains the chapter-03 recipe (SmolLM2, LoRA) on MovieLens with the same global batch,
so the same pairs and negatives each step; the ``--procs`` runs use one thread per process, and
a last run uses one process with as many threads as the largest run has processes (the same
cores, shared by threads instead of processes). Prints pairs/s, the all-reduce time, and how
far each run's losses and trained weights are from the first run's. Needs LLMREC_DATA_DIR.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec_lib import scaling  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--n-layers", type=int, default=4)
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    plan = [(p, 1) for p in args.procs] + [(1, max(args.procs))]
    rows, first = [], None
    for nproc, threads in plan:
        run = scaling.launch_ddp(nproc, out / f"{nproc}x{threads}", threads_per_process=threads,
                                 global_batch=args.global_batch, steps=args.steps, n_layers=args.n_layers)
        s = scaling.ddp_summary(run)
        first = first or (s, run["adapter"])
        loss_gap = np.max(np.abs(np.array(s["loss"]) - first[0]["loss"]) / np.array(first[0]["loss"]))
        w_gap = np.linalg.norm(run["adapter"] - first[1]) / np.linalg.norm(first[1])
        rows.append(f"{nproc} proc x {threads} thr  {s['seconds_per_step']:7.2f} s/step  "
                    f"{s['examples_per_second']:6.2f} pairs/s  all-reduce {s['allreduce_ms']:7.2f} ms  "
                    f"loss gap {loss_gap:.1e}  weight gap {w_gap:.1e}  (wall {run['wall_seconds']:.0f} s)")
        print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
