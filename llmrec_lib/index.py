"""faiss indexes behind one small wrapper: build, search, save / load, size, ANN recall.

Retrieval serves a user by nearest-neighbour search over item vectors. An exact index
(``flat``) compares the query with every item; approximate ones trade a little recall for
speed or memory:

=========  ==============================================================  ==================
kind       idea                                                            knobs
=========  ==============================================================  ==================
flat       exact brute force                                               none
ivf        k-means the items into ``nlist`` cells, search ``nprobe`` cells  nlist, nprobe
hnsw       a navigable small-world graph, greedy search                    M, ef_construction, ef_search
pq         product quantisation: each vector as ``pq_m`` one-byte codes     pq_m, nbits
ivfpq      IVF cells holding PQ codes (the classic billion-scale recipe)   nlist, nprobe, pq_m, nbits
=========  ==============================================================  ==================

Metrics: ``"ip"`` (inner product), ``"cosine"`` (vectors *and queries* L2-normalised, then
inner product) and ``"l2"``. :meth:`VectorIndex.search` always returns scores where
**higher is better**: the similarity for ip / cosine, the *negative squared* distance for l2.

Defaults suit the book's catalogue (about 10k vectors): nlist = round(sqrt(n)),
nprobe = 10 (capped at nlist), HNSW M = 32, efConstruction = 200, efSearch = 128,
pq_m = d / 8 sub-quantisers (8 dimensions each) of 8 bits. k-means training uses ``seed``.
faiss uses as many threads as this process may run on (``LLMREC_THREADS`` or
``OMP_NUM_THREADS`` override), never more.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "METRICS", "VectorIndex", "build_index", "load_index", "ann_recall", "compare_indexes",
           "build_key", "set_threads"]

KINDS = ("flat", "ivf", "hnsw", "pq", "ivfpq")
METRICS = ("ip", "cosine", "l2")
FORMAT = "llmrec-index/1"


def _faiss():
    # OMP_WAIT_POLICY=PASSIVE is set by llmrec_lib/__init__.py before faiss's OpenMP loads
    import faiss  # imported lazily: `import llmrec_lib.index` stays cheap

    return faiss


def set_threads(n: int | None = None) -> int:
    """Set faiss's OpenMP threads, never more than this process may run on.

    Args:
        n: threads to use; None reads LLMREC_THREADS, else OMP_NUM_THREADS, else takes the CPUs
            this process may use.

    Returns:
        The number of threads set.
    """
    if n is None:
        env = os.environ.get("LLMREC_THREADS") or os.environ.get("OMP_NUM_THREADS")
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            available = os.cpu_count() or 1
        n = int(env) if env else available
        n = min(n, available)
    n = max(1, int(n))
    _faiss().omp_set_num_threads(n)
    return n


def _as_matrix(x, dim: int | None, what: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array (n, d), got shape {np.shape(x)}")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{what} must be numeric, got dtype {a.dtype}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{what} have dimension {a.shape[1]}, the index has {dim}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} hold NaN or inf values")
    return a


def _normalise(a: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what}: {int((norms == 0).sum())} zero vectors have no direction; cosine is undefined")
    return np.ascontiguousarray(a / norms, dtype=np.float32)


def _default_pq_m(d: int) -> int:
    """Largest divisor of d that is at most d / 8 (8 dims per sub-quantiser), at least 1."""
    target = max(1, d // 8)
    return max(m for m in range(1, target + 1) if d % m == 0)


@dataclass
class VectorIndex:
    """A faiss index with the facts needed to use it correctly later."""

    kind: str
    metric: str
    dim: int
    params: dict = field(default_factory=dict)
    index: object = field(default=None, repr=False)  # the faiss.Index

    @property
    def n(self) -> int:
        """How many vectors the index holds."""
        return int(self.index.ntotal)

    def add(self, vectors) -> None:
        """Add vectors (ids continue from ``n``); trained kinds must already be trained."""
        x = _as_matrix(vectors, self.dim, "vectors")
        if self.metric == "cosine":
            x = _normalise(x, "vectors")
        set_threads()
        self.index.add(x)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the recall / speed knob after building: ``nprobe`` (ivf, ivfpq: cells
        searched) or ``ef_search`` (hnsw: candidate list size)."""
        faiss = _faiss()
        if nprobe is not None:
            if self.kind not in ("ivf", "ivfpq"):
                raise ValueError(f"nprobe applies to ivf / ivfpq indexes, not {self.kind!r}")
            ivf = faiss.extract_index_ivf(self.index)
            ivf.nprobe = int(min(max(1, nprobe), ivf.nlist))
            self.params["nprobe"] = int(ivf.nprobe)
        if ef_search is not None:
            if self.kind != "hnsw":
                raise ValueError(f"ef_search applies to hnsw indexes, not {self.kind!r}")
            self.index.hnsw.efSearch = int(max(1, ef_search))
            self.params["ef_search"] = int(self.index.hnsw.efSearch)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: ``(scores float32 (nq, k), ids int64 (nq, k))``, best first.

        Scores: higher is better (similarity for ip / cosine, -squared distance for l2).
        When fewer than k items are found (small nprobe, k > n) ids are -1, scores -inf.
        """
        if int(k) < 1:
            raise ValueError("k must be at least 1")
        q = _as_matrix(queries, self.dim, "queries")
        if self.metric == "cosine":
            q = _normalise(q, "queries")
        set_threads()
        scores, ids = self.index.search(q, int(k))
        if self.metric == "l2":
            scores = -scores
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)

    def memory_bytes(self) -> int:
        """Bytes of the serialised index: vectors or codes, plus centroids / graph links."""
        return int(_faiss().serialize_index(self.index).nbytes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the faiss file at ``path`` and its metadata at ``path + ".json"``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss = _faiss()
        faiss.write_index(self.index, str(path))
        meta = {
            "format": FORMAT,
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "n": self.n,
            "params": self.params,
            "faiss_version": getattr(faiss, "__version__", "unknown"),
        }
        _meta_path(path).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, dim: int | None = None, metric: str | None = None, kind: str | None = None
    ) -> "VectorIndex":
        """Read an index written by :meth:`save`. ``dim`` / ``metric`` / ``kind``: what the
        caller expects; a mismatch raises instead of returning wrong neighbours."""
        path = Path(path)
        meta_path = _meta_path(path)
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(
                f"need both {path} and {meta_path}; build the index and call .save(path) first"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path} is not {FORMAT} metadata (format={meta.get('format')!r})")
        for key, want in (("dim", dim), ("metric", metric), ("kind", kind)):
            if want is not None and meta[key] != want:
                raise ValueError(
                    f"index at {path} has {key}={meta[key]!r} but {want!r} was expected: it was "
                    "built for other vectors; rebuild it with the current encoder"
                )
        faiss = _faiss()
        index = faiss.read_index(str(path))
        want_type = faiss.METRIC_L2 if meta["metric"] == "l2" else faiss.METRIC_INNER_PRODUCT
        if index.d != meta["dim"] or index.ntotal != meta["n"] or index.metric_type != want_type:
            raise ValueError(
                f"{path} (d={index.d}, n={index.ntotal}) does not match its metadata "
                f"(d={meta['dim']}, n={meta['n']}, metric={meta['metric']}): the files are from "
                "different builds; rebuild and save again"
            )
        return cls(kind=meta["kind"], metric=meta["metric"], dim=int(meta["dim"]), params=meta["params"], index=index)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, metric={self.metric!r}, dim={self.dim}, n={self.n}, params={self.params})"


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def load_index(path, dim: int | None = None, metric: str | None = None, kind: str | None = None) -> VectorIndex:
    """Read an index written by :meth:`VectorIndex.save` (same as :meth:`VectorIndex.load`).

    Args:
        path: the faiss file; its metadata sits beside it at ``path + ".json"``.
        dim: the dimension the caller expects (None: any).
        metric: the metric the caller expects (None: any).
        kind: the kind the caller expects (None: any).

    Returns:
        The :class:`VectorIndex`; a mismatch with what was expected raises ValueError.
    """
    return VectorIndex.load(path, dim=dim, metric=metric, kind=kind)


def build_index(
    vectors,
    kind: str = "flat",
    metric: str = "ip",
    *,
    nlist: int | None = None,
    nprobe: int = 10,
    M: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    pq_m: int | None = None,
    nbits: int | None = None,
    seed: int = 0,
) -> VectorIndex:
    """Build an index over ``vectors`` (n, d); row i gets id i (the catalogue column).

    See the module docstring for the kinds and their knobs. ``nbits`` defaults to 8, lowered
    for tiny inputs so k-means has at least as many points as centroids (2**nbits <= n).

    Args:
        vectors: (n, d) float array, one row per item.
        kind: one of :data:`KINDS`.
        metric: one of :data:`METRICS`.
        nlist: ivf / ivfpq cells (None: round(sqrt(n))).
        nprobe: ivf / ivfpq cells searched per query (capped at nlist).
        M: hnsw links per node.
        ef_construction: hnsw candidate list size while building.
        ef_search: hnsw candidate list size while searching.
        pq_m: pq / ivfpq sub-quantisers; must divide d (None: d / 8 or the next divisor below).
        nbits: bits per pq code (None: 8, or fewer for tiny inputs).
        seed: the k-means seed.

    Returns:
        The :class:`VectorIndex` holding every row, its knobs in ``params``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    faiss = _faiss()
    x = _as_matrix(vectors, None, "vectors")
    if metric == "cosine":
        x = _normalise(x, "vectors")
    n, d = x.shape
    params = _index_params(kind, n, d, nlist=nlist, nprobe=nprobe, M=M, ef_construction=ef_construction,
                           ef_search=ef_search, pq_m=pq_m, nbits=nbits, seed=seed)
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    set_threads()
    index = faiss.index_factory(d, _factory_string(kind, params), faiss_metric)
    _set_knobs(index, kind, params)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    return VectorIndex(kind=kind, metric=metric, dim=d, params=params, index=index)


def _index_params(kind: str, n: int, d: int, *, nlist, nprobe, M, ef_construction, ef_search, pq_m, nbits,
                  seed) -> dict:
    """The knobs that apply to ``kind``, defaults filled in for ``n`` vectors of dimension ``d``
    and checked (a bad one raises here, before faiss sees it); they are kept in
    :attr:`VectorIndex.params` and saved with the index."""
    params: dict = {}
    if kind in ("ivf", "ivfpq"):
        nlist = int(nlist) if nlist is not None else max(1, int(round(math.sqrt(n))))
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist={nlist} must be between 1 and the number of vectors ({n})")
        params.update(nlist=nlist, nprobe=int(min(max(1, nprobe), nlist)))
    if kind in ("pq", "ivfpq"):
        pq_m = int(pq_m) if pq_m is not None else _default_pq_m(d)
        if pq_m < 1 or d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the dimension {d}")
        nbits = int(nbits) if nbits is not None else max(1, min(8, int(math.floor(math.log2(n)))))
        if 2**nbits > n:
            raise ValueError(f"nbits={nbits} needs at least {2**nbits} training vectors, got {n}")
        params.update(pq_m=pq_m, nbits=nbits)
    if kind == "hnsw":
        params.update(M=int(M), ef_construction=int(ef_construction), ef_search=int(ef_search))
    params["seed"] = int(seed)
    return params


def _factory_string(kind: str, params: dict) -> str:
    """faiss's ``index_factory`` description of ``kind`` with ``params``."""
    return {
        "flat": "Flat",
        "ivf": f"IVF{params.get('nlist')},Flat",
        "hnsw": f"HNSW{params.get('M')}",
        # "np": no polysemous training (a 40x slower extra step for Hamming-filtered
        # search, which we never use)
        "pq": f"PQ{params.get('pq_m')}x{params.get('nbits')}np",
        "ivfpq": f"IVF{params.get('nlist')},PQ{params.get('pq_m')}x{params.get('nbits')}np",
    }[kind]


def _set_knobs(index, kind: str, params: dict) -> None:
    """Set the k-means seeds and the search knobs that ``index_factory`` cannot spell."""
    if kind in ("ivf", "ivfpq"):
        index.cp.seed = params["seed"]
        index.nprobe = params["nprobe"]
    if kind in ("pq", "ivfpq"):
        index.pq.cp.seed = params["seed"]
    if kind == "hnsw":
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]


def ann_recall(approx_ids, exact_ids, per_query: bool = False):
    """Share of the exact neighbours that the approximate search also returned.

    ka > ke measures "R@ke within ka", the usual re-ranking setting.

    Args:
        approx_ids: (nq, ka) ids the approximate index returned; -1 entries are empty.
        exact_ids: (nq, ke) the exact neighbours, row-aligned; -1 entries are not counted.
        per_query: return one value per query instead of their mean.

    Returns:
        The mean recall over queries (a float), or the per-query array.
    """
    a = np.asarray(approx_ids)
    e = np.asarray(exact_ids)
    if a.ndim != 2 or e.ndim != 2 or a.shape[0] != e.shape[0]:
        raise ValueError(f"need two (n_queries, k) id arrays with the same rows, got {a.shape} and {e.shape}")
    a = a.astype(np.int64)
    e = e.astype(np.int64)
    m = int(max(a.max(initial=-1), e.max(initial=-1))) + 1
    rows = np.arange(a.shape[0], dtype=np.int64)[:, None]
    keys_a = (rows * m + a)[a >= 0]
    found = np.isin(rows * m + e, keys_a) & (e >= 0)  # (nq, ke)
    n_exact = (e >= 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(n_exact > 0, found.sum(axis=1) / np.maximum(n_exact, 1), np.nan)
    if per_query:
        return per
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


# the index configurations the book compares (chapter 05, benchmarks/bench_index.py)
STANDARD_CONFIGS = (
    ("flat", {}),
    ("ivf", {"nprobe": 10}),
    ("hnsw", {"M": 32, "ef_search": 128}),
    ("pq", {}),
    ("ivfpq", {"nprobe": 10}),
)


def build_key(kind: str, params: dict) -> tuple:
    """The key of the index that ``(kind, params)`` needs built: search-only knobs (``nprobe``,
    ``ef_search``) left out, since :meth:`VectorIndex.set_search_params` changes them later.

    Args:
        kind: one of :data:`KINDS`.
        params: :func:`build_index`'s keywords.

    Returns:
        ``(kind, sorted build parameters)``, the key of :func:`compare_indexes`'s ``built``.
    """
    build_params = {key: v for key, v in params.items() if key not in ("nprobe", "ef_search")}
    return kind, tuple(sorted(build_params.items()))


def compare_indexes(items, queries, configs=STANDARD_CONFIGS, *, k: int = 10, metric: str = "cosine",
                    n_single: int = 100, seed: int = 0, exact_ids=None, built: dict | None = None):
    """Build each ``(kind, params)`` index over ``items`` and measure it on ``queries``.

    The exact top-k is ``exact_ids`` if given, else brute force over ``items`` (a Flat index).
    Search-only knobs (``nprobe``, ``ef_search``) reuse an index already built with the same
    build knobs.

    Args:
        items: (n, d) item vectors.
        queries: (nq, d) query vectors.
        configs: ``(kind, params)`` pairs, params as :func:`build_index`'s keywords.
        k: the neighbours measured.
        metric: one of :data:`METRICS`.
        n_single: queries timed one by one for the single-query latency.
        seed: the k-means seed of every index.
        exact_ids: the exact top-k ids (nq, >= k), if already known.
        built: a dict to keep the built indexes in, keyed by :func:`build_key`, so a caller can
            search them again without rebuilding; an index already in it is used as it is
            (its ``build_s`` is then NaN).

    Returns:
        A DataFrame, one row per configuration: build seconds, batch and single-query latency
        (microseconds per query), index memory (bytes, :meth:`VectorIndex.memory_bytes`),
        ``recall@k`` = share of the exact top-k returned (:func:`ann_recall`), and ``recall@k
        in 10k`` = the share found among its top ``10 * k`` (what survives exact re-scoring of
        a wider candidate list, the usual way to use PQ).
    """
    import time

    import pandas as pd

    items = _as_matrix(items, None, "items")
    queries = _as_matrix(queries, items.shape[1], "queries")
    if exact_ids is None:
        _, exact_ids = build_index(items, "flat", metric).search(queries, k)
    built = {} if built is None else built
    rows = []
    for kind, params in configs:
        key = build_key(kind, params)
        t0 = time.perf_counter()
        if key not in built:
            built[key] = build_index(items, kind, metric, seed=seed, **dict(key[1]))
            build_s = time.perf_counter() - t0
        else:
            build_s = float("nan")
        index = built[key]
        if "nprobe" in params or "ef_search" in params:
            index.set_search_params(nprobe=params.get("nprobe"), ef_search=params.get("ef_search"))
        t0 = time.perf_counter()
        _, ids = index.search(queries, k)
        batch_us = (time.perf_counter() - t0) / len(queries) * 1e6
        n1 = min(n_single, len(queries))
        t0 = time.perf_counter()
        for i in range(n1):
            index.search(queries[i : i + 1], k)
        single_us = (time.perf_counter() - t0) / max(n1, 1) * 1e6
        _, wide = index.search(queries, 10 * k)
        rows.append({
            "index": kind + (" " + ",".join(f"{a}={b}" for a, b in params.items()) if params else ""),
            "kind": kind, "dim": items.shape[1], "build_s": build_s, "batch_us_per_query": batch_us,
            "single_us_per_query": single_us, "memory_bytes": index.memory_bytes(),
            f"recall@{k}": ann_recall(ids, exact_ids), f"recall@{k} in {10 * k}": ann_recall(wide, exact_ids),
        })
    return pd.DataFrame(rows)
