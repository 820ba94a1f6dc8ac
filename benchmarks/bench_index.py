"""faiss index trade-offs at the book's scale: build time, latency, memory, recall.

Run:  .venv/bin/python benchmarks/bench_index.py [--n 10000] [--dims 384 576] [--nq 1000]

Vectors: ``n`` unit-length points around 100 random centres (the catalogue of about 10k
movies embedded by MiniLM, d=384, or SmolLM2, d=576, looks like this: topical clusters).
Queries are drawn the same way. Recall@k is the share of the exact (Flat) top-k that each
index returns; "in 10k" is the share found among its top 10k (what survives if those
candidates are re-scored exactly, the usual way to use PQ); latency is per query, measured on a batch of ``nq`` queries and on single
queries (the online case).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec_lib.index import ann_recall, build_index, set_threads  # noqa: E402


def clustered(n: int, d: int, n_clusters: int = 100, noise: float = 0.6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d)) / np.sqrt(d)
    x = centres[rng.integers(0, n_clusters, n)] + noise * rng.normal(size=(n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 576])
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = set_threads(args.threads)
    print(f"n={args.n} vectors, {args.nq} queries, recall@{args.k} vs Flat, faiss threads={threads}")

    configs = [
        ("flat", {}),
        ("ivf", {"nprobe": 10}),
        ("ivf", {"nprobe": 30}),
        ("hnsw", {"M": 32, "ef_search": 64}),
        ("hnsw", {"M": 32, "ef_search": 128}),
        ("pq", {}),
        ("ivfpq", {"nprobe": 10}),
    ]
    for d in args.dims:
        x = clustered(args.n, d, seed=d)
        q = clustered(args.nq, d, seed=d + 1)
        print(f"\nd={d}  (float32 vectors: {x.nbytes / 2**20:.1f} MiB)")
        wide = f"in {10 * args.k}"
        print(f"{'index':<26} {'build s':>8} {'batch us/q':>10} {'single us/q':>11} {'memory MiB':>10} "
              f"{'recall@' + str(args.k):>9} {wide:>7}")
        exact = None
        built: dict[tuple, object] = {}
        for kind, params in configs:
            build_params = {key: v for key, v in params.items() if key not in ("nprobe", "ef_search")}
            key = (kind, tuple(sorted(build_params.items())))
            t0 = time.perf_counter()
            if key not in built:  # knobs that only affect search reuse the built index
                built[key] = build_index(x, kind, "cosine", seed=0, **build_params)
                build_s = time.perf_counter() - t0
            else:
                build_s = float("nan")
            index = built[key]
            if "nprobe" in params or "ef_search" in params:
                index.set_search_params(nprobe=params.get("nprobe"), ef_search=params.get("ef_search"))
            t0 = time.perf_counter()
            _, ids = index.search(q, args.k)
            batch_us = (time.perf_counter() - t0) / len(q) * 1e6
            n_single = min(200, len(q))
            t0 = time.perf_counter()
            for i in range(n_single):
                index.search(q[i : i + 1], args.k)
            single_us = (time.perf_counter() - t0) / n_single * 1e6
            if exact is None:
                exact = ids
            # the re-ranking recipe: fetch 10k candidates, re-score them exactly, keep k
            _, ids_wide = index.search(q, 10 * args.k)
            label = kind + (" " + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
            print(
                f"{label:<26} {build_s:8.2f} {batch_us:10.1f} {single_us:11.1f} "
                f"{index.memory_bytes() / 2**20:10.2f} {ann_recall(ids, exact):9.3f} {ann_recall(ids_wide, exact):7.3f}"
            )


if __name__ == "__main__":
    main()
