"""How fast are chapter 02's baselines? Fit and scoring times, and SASRec's threading pitfall.

Not a test: a script that prints a table. Run it from the project root:

    LLMREC_DATA_DIR=../shared/data/ml-latest-small .venv/bin/python benchmarks/bench_baselines.py
    ... bench_baselines.py --threads   # also time SASRec epochs in subprocesses with 1 and 2
                                       # threads and OMP_WAIT_POLICY active vs passive

It measures, on the per-user split of ml-latest-small:
1. fit time of popularity (all time; a user-anchored window) and item-kNN (several k),
   and the time to score every validation user against the whole catalogue;
2. SASRec-style seconds per epoch (quick-mode shape: max_len 50, d 64, 2 layers, batch 64);
3. with ``--threads``: the same epochs with 1 / 2 torch threads under OpenMP's active
   (spinning) and passive wait policies. On a 2-core machine shared with other processes,
   spinning threads made each epoch up to 40x slower; this is why ``llmrec_lib/__init__.py``
   sets ``OMP_WAIT_POLICY=PASSIVE`` before anything imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPOCH_PROBE = """
import json, sys, time, torch
from llmrec_lib import baselines as B, data
torch.set_num_threads(int(sys.argv[1]))
ml = data.load_movielens(); split = data.per_user_split(ml.ratings)
m = B.SASRec(ml.item_ids, epochs=int(sys.argv[2]), max_len=50).fit(split.train, progress=False)
times = [r["seconds"] for r in m.train_log]
print(json.dumps([b - a for a, b in zip([0.0] + times[:-1], times)]))
"""


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", action="store_true", help="also probe threads x wait policy")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    from llmrec_lib import baselines as B
    from llmrec_lib import data

    ml = data.load_movielens()
    split = data.per_user_split(ml.ratings)
    users = split.users("valid")
    rows = []
    models = [
        ("popular (all time)", lambda: B.MostPopular(ml.item_ids)),
        ("popular (365 d, user)", lambda: B.MostPopular(ml.item_ids, window_days=365, anchor="user")),
        ("item-kNN (k=20)", lambda: B.ItemKNN(ml.item_ids, n_neighbors=20)),
        ("item-kNN (k=100)", lambda: B.ItemKNN(ml.item_ids, n_neighbors=100)),
        ("item-kNN (all)", lambda: B.ItemKNN(ml.item_ids, n_neighbors=None)),
    ]
    for name, make in models:
        fit_s = timed(lambda: make().fit(split.train))
        system = make().fit(split.train).for_stage(split, "valid")
        score_s = timed(lambda: system.score(users))
        rows.append((name, fit_s, score_s))
    print(f"{'model':24s} {'fit s':>8s} {'score all valid users s':>24s}   ({len(users)} users x {ml.item_ids.size} items)")
    for name, fit_s, score_s in rows:
        print(f"{name:24s} {fit_s:8.3f} {score_s:24.3f}")

    m = B.SASRec(ml.item_ids, epochs=args.epochs, max_len=50).fit(split.train, progress=False)
    per_epoch = m.fit_seconds / len(m.train_log)
    print(f"\nSASRec-style: {m.n_windows} windows, {per_epoch:.2f} s per epoch "
          f"({args.epochs} epochs, torch threads {__import__('torch').get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})")

    if args.threads:
        print("\nSASRec seconds per epoch (median of epochs 2..), in fresh processes:")
        for policy in ("ACTIVE", "PASSIVE"):
            for threads in (1, 2):
                env = {**os.environ, "OMP_WAIT_POLICY": policy}
                out = subprocess.run([sys.executable, "-c", EPOCH_PROBE, str(threads), str(args.epochs)],
                                     env=env, cwd=ROOT, capture_output=True, text=True, check=True)
                epochs = json.loads(out.stdout.strip().splitlines()[-1])
                med = sorted(epochs[1:])[len(epochs[1:]) // 2] if len(epochs) > 1 else epochs[0]
                print(f"  OMP_WAIT_POLICY={policy:7s} threads={threads}: {med:6.2f} s  (all: "
                      + ", ".join(f"{e:.2f}" for e in epochs) + ")")


if __name__ == "__main__":
    main()
