"""How fast is the evaluation protocol? Batched numpy vs a naive per-user loop.

Run:  .venv/bin/python benchmarks/bench_evaluate.py [--real] [--repeats 3]

Shapes are MovieLens ml-latest-small's: about 610 users x 9,742 items. With ``--real`` (and
LLMREC_DATA_DIR set) the per-user split's validation stage is used; otherwise a synthetic
split with the same shapes (about 165 seen items and 8 targets per user). Two systems:
random scores (no ties) and popularity (many ties: the harder case for top-K). The naive
loop is what one writes first: per user, copy the row, mask seen items, sort the whole
catalogue, compute metrics with Python sets. Both must give the same numbers.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec_lib.evaluate import EvalData, MatrixScorer, evaluate  # noqa: E402


def synthetic_data(n_users: int = 610, n_items: int = 9742, seed: int = 0) -> EvalData:
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.3, size=n_items).astype(float)  # long-tailed item popularity
    p = pop / pop.sum()
    train, targets = [], []
    for u in range(n_users):
        n_seen = int(rng.integers(20, 400))
        chosen = rng.choice(n_items, size=n_seen + 8, replace=False, p=p)
        train.append(pd.DataFrame({"user_id": u, "item_id": chosen[:n_seen]}))
        targets.append(pd.DataFrame({"user_id": u, "item_id": chosen[n_seen:]}))
    train, targets = pd.concat(train), pd.concat(targets)
    return EvalData.from_frames(targets, train, train, np.arange(n_items), stage="valid")


def real_data() -> EvalData:
    from llmrec_lib import data

    ml = data.load_movielens()
    return EvalData.from_split(data.per_user_split(ml.ratings), "valid", ml.item_ids)


def naive_evaluate(scores: np.ndarray, data: EvalData, ks=(10, 50, 100)) -> dict[str, float]:
    """One user at a time, full sort, Python sets: the loop the protocol replaces."""
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "hr", "mrr")}
    for u in range(data.n_users):
        row = scores[u].astype(np.float64)  # copy
        row[data.exclusions[u]] = -np.inf
        ranked = np.argsort(-row, kind="stable")[: max(ks)]
        targets = set(data.targets[u].tolist())
        for k in ks:
            hits = [int(i) in targets for i in ranked[:k]]
            dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(targets))))
            first = next((r for r, h in enumerate(hits) if h), None)
            sums[f"recall@{k}"] += sum(hits) / len(targets)
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"hr@{k}"] += float(any(hits))
            sums[f"mrr@{k}"] += 0.0 if first is None else 1 / (first + 1)
    return {key: value / data.n_users for key, value in sums.items()}


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", action="store_true", help="use the MovieLens per-user split (valid)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()

    data = real_data() if args.real else synthetic_data()
    print(f"{'real' if args.real else 'synthetic'} data: {data}")
    rng = np.random.default_rng(0)
    systems = {
        "random": rng.random((data.n_users, data.n_items), dtype=np.float32),
        "popularity": np.broadcast_to(data.item_counts.astype(np.float32), (data.n_users, data.n_items)),
    }
    print(f"{'system':<11} {'batched s':>9} {'users/s':>9} {'naive s':>8} {'users/s':>8} {'speed-up':>8}  recall@10 (batched = naive)")
    for name, scores in systems.items():
        system = MatrixScorer(scores, data.user_ids, name=name)
        t_fast, result = best_of(lambda: evaluate(system, data, batch_size=args.batch_size), args.repeats)
        t_slow, naive = best_of(lambda: naive_evaluate(scores, data), 1)
        for key, value in naive.items():  # same protocol, same numbers
            assert abs(result.mean(key) - value) < 1e-9, (name, key, result.mean(key), value)
        print(
            f"{name:<11} {t_fast:9.3f} {data.n_users / t_fast:9.0f} {t_slow:8.2f} "
            f"{data.n_users / t_slow:8.0f} {t_slow / t_fast:7.1f}x  {result.mean('recall@10'):.4f}"
        )
        assert t_fast < 1.0, f"evaluate() took {t_fast:.2f} s for {data.n_users} x {data.n_items}: budget is 1 s"


if __name__ == "__main__":
    main()
