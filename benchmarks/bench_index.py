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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec_lib.index import compare_indexes, set_threads  # noqa: E402


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
        table = compare_indexes(x, q, configs, k=args.k, n_single=200)
        table["memory MiB"] = table.pop("memory_bytes") / 2**20
        print(table.drop(columns=["kind", "dim"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))

if __name__ == "__main__":
    main()
