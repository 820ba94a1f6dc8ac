"""Scaling out (chapter 10): data-parallel training, an index at a million items, inference cost.

Three measurements and one calculation, each small enough for two CPU cores:

* :func:`launch_ddp` runs the book's dual-encoder trainer (:class:`llmrec_lib.train.Trainer`,
  unchanged) under ``torchrun`` with 1 or more processes on the **same global batch**, and
  returns each run's per-step losses, step times, the time of one gradient all-reduce and the
  trained adapter, so that "2 processes train the same model" and "what the communication costs"
  are both measured. On CPUs the processes talk through gloo; on GPUs the same command uses nccl
  (:func:`llmrec_lib.distributed.init_distributed` picks it).
* :func:`index_at_scale` builds a faiss IVF-PQ index (:func:`llmrec_lib.index.build_index`)
  over ``n`` synthetic unit vectors (:func:`clustered_vectors`) and measures build time,
  latency, memory and recall against exact search (:func:`exact_topk`) on a sample of queries.
* :func:`encoding_throughput` times batch inference of an encoder over real prompts
  (:func:`llmrec_lib.encoders.embed_texts`) and counts its FLOPs (:func:`forward_flops`).
* :func:`project` turns measured FLOPs per item and per user into GPUs per day at an assumed
  peak and utilisation, and :func:`index_bytes` an index size, for production-scale counts that
  the caller states as assumptions. :func:`arm_costs` is chapter 09's bill per arm (FLOPs per
  user, index bytes, what a new movie needs), from each model's sizes.
* :func:`recgpt_run_tokens` counts the prompt and answer tokens per user of the committed
  RecGPT runs (chapters 06 and 07), and :func:`recgpt_bill` turns tokens per user and a
  device's speed into device-hours per refresh of every user (:func:`generation_flops` gives
  a prompt's prefill and decode FLOPs for an assumed model and GPU).
* :func:`checkpoint_curve` reads the validation recall a committed adapter's run logged at its
  checkpoints, and :func:`log_trend` fits quality against the log of a scale axis.

The worker is a module entry point, so the chapter and a terminal run the same thing::

    torchrun --standalone --nproc_per_node 2 -m llmrec_lib.scaling ddp-worker --out /tmp/ddp2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["ddp_configs", "launch_ddp", "ddp_summary", "clustered_vectors", "exact_topk", "index_at_scale",
           "matmul_params", "forward_flops", "encoding_throughput", "project", "index_bytes", "ArmCost", "arm_costs",
           "recgpt_run_tokens",
           "recgpt_bill", "generation_flops", "checkpoint_curve", "log_trend"]


# --------------------------------------------------------------------------------------------
# 1. Data-parallel training
# --------------------------------------------------------------------------------------------


def ddp_configs(world: int, *, global_batch: int = 16, steps: int = 12, n_layers: int | None = 4,
                recipe_name: str = "infonce", backbone: str | None = None):
    """The recipe ``recipe_name`` cut down for a throughput measurement: ``n_layers`` layers,
    ``steps`` steps, a short warm-up (so the adapter moves and any mismatch between runs shows),
    no checkpoints, and ``global_batch / world`` pairs per process so every run sees the same
    global batch (and so the same negatives) at every step. ``backbone`` swaps the model (the
    tests use ``"tiny-llama"``); ``n_layers=None`` keeps all of its layers.

    Args:
        world: the number of processes.
        global_batch: pairs per step over all processes (a multiple of ``world``).
        steps: the steps to run.
        n_layers: the layers kept (None: all).
        recipe_name: the recipe to cut down (:mod:`llmrec_lib.recipes`).
        backbone: another model's name (default: the recipe's).

    Returns:
        (EncoderConfig, TrainConfig).
    """
    from llmrec_lib import recipes

    if world < 1 or global_batch % world:
        raise ValueError(f"global_batch={global_batch} must split evenly over world={world} processes")
    enc, tr = recipes.recipe(recipe_name, "quick")
    enc = replace(enc, n_layers=n_layers, **({"backbone": backbone} if backbone else {}))
    tr = replace(tr, steps=steps, batch_size=global_batch // world, warmup_steps=min(2, steps),
                 checkpoint_every=0, eval_every=0)
    return enc, tr


def _ddp_worker(out: Path, global_batch: int, steps: int, n_layers: int | None, threads: int, comm_repeats: int,
                backbone: str | None = None) -> None:
    """One process of a run: train, time the all-reduce, write ``rank<r>.json`` (+ adapter)."""
    import torch

    from llmrec_lib import config, distributed, recipes, train
    from llmrec_lib.encoders import DualEncoder

    torch.set_num_threads(threads)
    joined = distributed.init_distributed()
    rank, world = distributed.dist_info()
    try:
        enc, tr = ddp_configs(world, global_batch=global_batch, steps=steps, n_layers=n_layers, backbone=backbone)
        setting = recipes.build_setting()
        pairs = train.training_pairs(setting.split.train, positive_only=tr.positive_only)
        config.seed_everything(tr.seed)
        model = DualEncoder(enc)
        trainer = train.Trainer(model, pairs, setting.item_text, setting.history_text, tr,
                                catalogue=setting.ml.item_ids, progress=False)
        t0 = time.perf_counter()
        trainer.fit()
        fit_s = time.perf_counter() - t0
        comm = []
        if joined:  # the gradient all-reduce each step does, timed on its own
            import torch.distributed as dist

            for _ in range(comm_repeats):
                dist.barrier()
                t0 = time.perf_counter()
                distributed.average_gradients(trainer.params, world)
                comm.append(time.perf_counter() - t0)
        record = {
            "rank": rank, "world": world, "threads": threads, "global_batch": global_batch,
            "per_process_batch": tr.batch_size, "n_layers": n_layers, "fit_seconds": fit_s,
            "loss": [h["loss"] for h in trainer.state.history],
            "step_seconds": [h["seconds"] for h in trainer.state.history],
            "tokens": [h["tokens"] for h in trainer.state.history],
            "allreduce_seconds": comm,
            "grad_values": int(sum(p.numel() for p in trainer.params)),
            "backend": "nccl" if torch.cuda.is_available() else ("gloo" if joined else "none"),
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{rank}.json").write_text(json.dumps(record))
        if rank == 0:
            flat = torch.cat([p.detach().float().reshape(-1) for p in trainer.params]).numpy()
            np.save(out / "adapter.npy", flat)
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def launch_ddp(nproc: int, out_dir, *, threads_per_process: int = 1, global_batch: int = 16, steps: int = 12,
               n_layers: int | None = 4, comm_repeats: int = 10, backbone: str | None = None,
               timeout: float = 900) -> dict:
    """Run :func:`_ddp_worker` under ``torchrun --nproc_per_node nproc`` and collect its output.

    Raises with torchrun's output when a process fails.

    Args:
        nproc: the number of processes.
        out_dir: where the ranks write their records.
        threads_per_process: torch threads per process.
        global_batch: pairs per step over all processes.
        steps: the steps to run.
        n_layers: the layers kept (None: all).
        comm_repeats: timed repeats of the all-reduce.
        backbone: another model's name (default: the recipe's).
        timeout: seconds before the run is stopped.

    Returns:
        ``{"ranks": [record per rank], "adapter": flat trained weights, "wall_seconds",
        "command"}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rank*.json"):
        old.unlink()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "llmrec_lib.scaling", "ddp-worker", "--out", str(out), "--global-batch", str(global_batch),
           "--steps", str(steps), "--n-layers", str(n_layers or 0), "--threads", str(threads_per_process),
           "--comm-repeats", str(comm_repeats)] + (["--backbone", backbone] if backbone else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]
    shown = "torchrun --standalone --nproc_per_node " + " ".join([str(nproc)] + cmd[5:])
    return {"ranks": ranks, "adapter": np.load(out / "adapter.npy"), "wall_seconds": wall, "command": shown}


def ddp_summary(run: dict, skip: int = 3) -> dict:
    """Throughput of one :func:`launch_ddp` run over the steps after the first ``skip``.

    A step ends only when every process has its averaged gradients, so the step time is the
    slowest rank's (the median over steps of the per-step maximum). The global loss of a step is
    the mean of the ranks' losses (each rank's loss covers its own rows, against every rank's
    items as negatives). The all-reduce is reported twice: ``allreduce_ms``, the median of its
    timed repeats, and ``allreduce_best_ms``, the fastest, which is the cost of the operation
    itself. On a machine shared with other jobs the slow repeats are mostly one process waiting
    for a partner the operating system had set aside, not data moving.

    Args:
        run: what :func:`launch_ddp` returned.
        skip: the warm-up steps left out.

    Returns:
        A dict: processes, threads, backend, global_batch, seconds_per_step,
        examples_per_second, tokens_per_second, allreduce_ms, allreduce_best_ms, grad_values
        and the global loss per step.
    """
    ranks = run["ranks"]
    world, gb = ranks[0]["world"], ranks[0]["global_batch"]
    secs = np.max([r["step_seconds"] for r in ranks], axis=0)[skip:]
    if len(secs) == 0:
        raise ValueError(f"need more than skip={skip} steps to measure throughput")
    per_step = float(np.median(secs))
    tokens = np.sum([r["tokens"] for r in ranks], axis=0)[skip:]
    comm = [s for r in ranks for s in r["allreduce_seconds"]]
    return {
        "processes": world, "threads_per_process": ranks[0]["threads"], "backend": ranks[0]["backend"],
        "global_batch": gb, "seconds_per_step": per_step, "examples_per_second": gb / per_step,
        "tokens_per_second": float(np.median(tokens)) / per_step,
        "allreduce_ms": float(np.median(comm)) * 1e3 if comm else 0.0,
        "allreduce_best_ms": float(np.min(comm)) * 1e3 if comm else 0.0,
        "grad_values": ranks[0]["grad_values"],
        "loss": np.mean([r["loss"] for r in ranks], axis=0).tolist(),
    }


# --------------------------------------------------------------------------------------------
# 2. An index at a million items
# --------------------------------------------------------------------------------------------


def clustered_vectors(n: int, d: int, *, n_clusters: int = 100, rank: int | None = 32, noise: float = 0.6,
                      seed: int = 0, sample: int = 0, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit vectors (float32) in ``n_clusters`` topical clusters, like a catalogue's embeddings.

    A point is a cluster centre plus Gaussian noise (``noise`` relative to the centres' spread)
    in a random ``rank``-dimensional subspace of the ``d`` dimensions, plus a little isotropic
    noise (5%): trained embeddings vary along far fewer directions than they have (chapter 05's
    PCA compression relies on it). ``rank=None`` puts the clusters and noise in all ``d``
    dimensions, the hardest case for product quantisation. ``seed`` fixes the subspace and
    centres, ``sample`` the draws (items and queries: same ``seed``, different ``sample``).
    Made in chunks, so a million 576-d vectors need their 2.3 GB and little more.

    Args:
        n: the number of vectors.
        d: their dimension.
        n_clusters: the number of clusters.
        rank: the subspace's dimension (None: all ``d``).
        noise: the within-cluster spread, relative to the centres'.
        seed: fixes the subspace and centres.
        sample: fixes the draws.
        chunk: vectors made at a time.

    Returns:
        The (n, d) float32 unit vectors.
    """
    r = d if rank is None else int(rank)
    if n < 1 or d < 1 or n_clusters < 1 or not 1 <= r <= d:
        raise ValueError(f"need n, d, n_clusters >= 1 and 1 <= rank <= d, got {n}, {d}, {n_clusters}, {rank}")
    g = np.random.default_rng(seed)
    basis = (np.linalg.qr(g.standard_normal((d, r)))[0] if rank is not None else np.eye(d)).astype(np.float32)
    centres = g.standard_normal((n_clusters, r), dtype=np.float32)
    iso = np.float32(0.05 * np.sqrt(r / d))  # 5% of a latent coordinate's scale, spread over d dims
    rng = np.random.default_rng([seed, sample])
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = centres[rng.integers(0, n_clusters, m)] + np.float32(noise) * rng.standard_normal((m, r), dtype=np.float32)
        x = z @ basis.T if rank is not None else z
        x += iso * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    return out


def exact_topk(items: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> tuple[np.ndarray, float]:
    """Exact inner-product top-k ids (nq, k) by brute force over ``items`` in chunks, and the
    seconds it took: what a Flat index does, without copying the items into one.

    Args:
        items: (n, d) item vectors.
        queries: (nq, d) query vectors.
        k: how many ids per query (1..n).
        chunk: items scored at a time.

    Returns:
        (ids, seconds): the (nq, k) top ids, best first, and the time taken.
    """
    import torch

    if items.ndim != 2 or queries.ndim != 2 or items.shape[1] != queries.shape[1]:
        raise ValueError(f"need (n, d) items and (nq, d) queries, got {items.shape} and {queries.shape}")
    if not 1 <= k <= len(items):
        raise ValueError(f"k={k} must be between 1 and the number of items ({len(items)})")
    t0 = time.perf_counter()
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    best_s = torch.full((len(q), 0), -math.inf)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for s in range(0, len(items), chunk):
        block = torch.from_numpy(np.ascontiguousarray(items[s : s + chunk], dtype=np.float32))
        sc, ix = torch.topk(q @ block.T, min(k, len(block)), dim=1)
        cand_s = torch.cat([best_s, sc], dim=1)
        cand_i = torch.cat([best_i, ix + s], dim=1)
        top = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)
        best_s, best_i = top.values, torch.gather(cand_i, 1, top.indices)
    return best_i.numpy().astype(np.int64), time.perf_counter() - t0


def index_at_scale(n: int, d: int = 576, *, n_queries: int = 1000, k: int = 10, nprobes=(1, 8, 32),
                   nlist: int | None = None, pq_m: int | None = None, n_clusters: int = 100, rank: int | None = 32,
                   seed: int = 0):
    """IVF-PQ over ``n`` synthetic items (:func:`clustered_vectors`) against exact search.

    Args:
        n: the number of items.
        d: their dimension.
        n_queries: the number of queries.
        k: the recall's cut-off.
        nprobes: the IVF lists probed, one table row each.
        nlist: the IVF cells (None: :mod:`llmrec_lib.index`'s default, round(sqrt(n))).
        pq_m: the PQ sub-quantisers (None: the index's default, d / 8).
        n_clusters: the clusters of the synthetic items.
        rank: their subspace's dimension.
        seed: the seed of the items and queries.

    Returns:
        ``(table, facts)``: the table has one row per ``nprobe`` (from
        :func:`llmrec_lib.index.compare_indexes`: build seconds, batch and single-query latency,
        memory, recall@k and recall@k within the top 10k); ``facts`` has the sizes, the exact
        search's seconds per query, and the float32 bytes the vectors themselves take (a Flat
        index's size).
    """
    from llmrec_lib import index as ix

    t0 = time.perf_counter()
    items = clustered_vectors(n, d, n_clusters=n_clusters, rank=rank, seed=seed)
    queries = clustered_vectors(n_queries, d, n_clusters=n_clusters, rank=rank, seed=seed, sample=1)  # same centres
    make_s = time.perf_counter() - t0
    exact, exact_s = exact_topk(items, queries, k)
    build = {}
    if nlist is not None:
        build["nlist"] = nlist
    if pq_m is not None:
        build["pq_m"] = pq_m
    configs = [("ivfpq", {**build, "nprobe": int(p)}) for p in nprobes]
    table = ix.compare_indexes(items, queries, configs, k=k, metric="ip", n_single=100, seed=seed, exact_ids=exact)
    table.insert(1, "nprobe", [int(p) for p in nprobes])
    facts = {"n_items": n, "dim": d, "n_queries": n_queries, "k": k, "n_clusters": n_clusters, "rank": rank,
             "vectors_bytes": int(items.nbytes), "make_seconds": make_s,
             "exact_us_per_query": exact_s / n_queries * 1e6}
    return table, facts


# --------------------------------------------------------------------------------------------
# 3. Batch inference and its FLOPs
# --------------------------------------------------------------------------------------------


def matmul_params(backbone) -> int:
    """Weights a token multiplies through: the transformer's, without embeddings, the LM head
    and LoRA adapters (the same count as :func:`llmrec_lib.train.utilisation`).

    Args:
        backbone: the loaded backbone.

    Returns:
        The weight count.
    """
    return int(sum(p.numel() for n, p in backbone.model.named_parameters()
                   if "embed" not in n and "lm_head" not in n and "lora" not in n))


def forward_flops(n_params: int, n_tokens: float, n_layers: int, hidden: int, seq_len: float) -> float:
    """FLOPs of one forward pass over ``n_tokens`` tokens in sequences of ``seq_len``.

    :func:`llmrec_lib.train.transformer_flops` counts forward + backward with frozen weights,
    which is two forwards; half of it is the forward: 2 per weight per token plus attention.

    Args:
        n_params: the transformer's weights (:func:`matmul_params`).
        n_tokens: the tokens processed.
        n_layers: the layer count.
        hidden: the hidden width.
        seq_len: the sequence length.

    Returns:
        The FLOPs.
    """
    from llmrec_lib import train

    return train.transformer_flops(n_params, n_tokens, n_layers, hidden, seq_len, trainable_weights=False) / 2.0


def encoding_throughput(backbone, texts, *, max_length: int, batch_size: int = 32, peak_gflops: float | None = None,
                        repeats: int = 1) -> dict:
    """Time :func:`llmrec_lib.encoders.embed_texts` over ``texts`` (after one warm-up batch)
    and count its FLOPs over the real tokens; per text: tokens, FLOPs; overall: texts/s,
    achieved GFLOP/s and, with ``peak_gflops``, the utilisation (MFU). The best of ``repeats``.

    Args:
        backbone: the loaded backbone.
        texts: the texts to encode.
        max_length: tokens per text (longer ones are cut).
        batch_size: texts per forward pass.
        peak_gflops: the machine's peak (:func:`llmrec_lib.train.matmul_peak_gflops`), for MFU.
        repeats: timed repetitions.

    Returns:
        A dict of the measurements above.
    """
    from llmrec_lib import encoders

    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: nothing to time")
    ids = backbone.tokenizer(texts, truncation=True, max_length=max_length, verbose=False)["input_ids"]
    lengths = np.array([len(x) for x in ids], dtype=np.float64)
    encoders.embed_texts(backbone, texts[:batch_size], batch_size=batch_size, max_length=max_length,
                         progress=False)  # warm-up
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        encoders.embed_texts(backbone, texts, batch_size=batch_size, max_length=max_length, progress=False)
        best = min(best, time.perf_counter() - t0)
    n_params = matmul_params(backbone)
    # attention: each token attends over its own text's length
    flops = float(sum(forward_flops(n_params, t, backbone.n_layers, backbone.hidden_size, t) for t in lengths))
    out = {"texts": len(texts), "seconds": best, "texts_per_second": len(texts) / best,
           "tokens_per_text": float(lengths.mean()), "matmul_params": n_params,
           "flops_per_text": flops / len(texts), "achieved_gflops": flops / best / 1e9}
    if peak_gflops:
        out["peak_gflops"] = float(peak_gflops)
        out["mfu"] = out["achieved_gflops"] / peak_gflops
    return out


# --------------------------------------------------------------------------------------------
# 4. A projection on paper
# --------------------------------------------------------------------------------------------


def project(flops_per_item: float, flops_per_user: float, *, items_per_day: float, users_per_day: float,
            gpu_peak_flops: float, mfu: float) -> dict:
    """GPU-hours and GPUs (running all day) to embed ``items_per_day`` items and
    ``users_per_day`` users at ``mfu`` of a GPU's ``gpu_peak_flops`` (FLOP/s).

    Args:
        flops_per_item: FLOPs to embed one item.
        flops_per_user: FLOPs to embed one user.
        items_per_day: items embedded per day.
        users_per_day: users embedded per day.
        gpu_peak_flops: one GPU's peak, FLOP/s.
        mfu: the share of the peak achieved, in (0, 1].

    Returns:
        A dict: item_flops_per_day, user_flops_per_day, gpu_hours_per_day, gpus_all_day and
        items_per_gpu_second.
    """
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu is a share of the peak, in (0, 1], got {mfu}")
    if gpu_peak_flops <= 0 or min(items_per_day, users_per_day, flops_per_item, flops_per_user) < 0:
        raise ValueError("peak must be positive and counts / FLOPs non-negative")
    item_flops = flops_per_item * items_per_day
    user_flops = flops_per_user * users_per_day
    rate = gpu_peak_flops * mfu
    gpu_seconds = (item_flops + user_flops) / rate
    return {"item_flops_per_day": item_flops, "user_flops_per_day": user_flops,
            "gpu_hours_per_day": gpu_seconds / 3600, "gpus_all_day": gpu_seconds / 86400,
            "items_per_gpu_second": rate / flops_per_item if flops_per_item else math.inf}


def index_bytes(n_items: float, dim: int, bytes_per_value: float) -> float:
    """Bytes of ``n_items`` vectors of ``dim`` values, ``bytes_per_value`` each (4 float32,
    2 bf16; a PQ code with d/8 one-byte sub-quantisers is 1/8 byte per value).

    Args:
        n_items: the number of vectors.
        dim: values per vector.
        bytes_per_value: bytes each value takes.

    Returns:
        The bytes.
    """
    return float(n_items) * dim * bytes_per_value


@dataclass(frozen=True)
class ArmCost:
    """What one retrieval arm costs to serve, from its model's sizes (chapter 09's cost table)."""

    user_flops: float  # the forward pass that turns one user into a query
    score_flops: float  # scoring the whole catalogue against that query
    index_bytes: float  # what the served index holds in memory
    new_item_needs: str  # what a new movie needs before it can be retrieved

    @property
    def mflop_per_user(self) -> float:
        """Forward plus scoring, in millions of FLOPs per user."""
        return (self.user_flops + self.score_flops) / 1e6


def arm_costs(n_items: int, *, llm_user_flops: float, llm_long_user_flops: float, llm_item_flops: float,
              llm_dim: int, median_history: float, knn_nnz: int, sasrec: dict, towers,
              text_dim: int = 384, llm_best_long: bool = False) -> dict[str, ArmCost]:
    """Chapter 09's arms, each with its :class:`ArmCost`.

    Args:
        n_items: the catalogue size.
        llm_user_flops: :func:`forward_flops` of one user prompt (the first recipe's budget).
        llm_long_user_flops: the same with the second recipe's longer budget.
        llm_item_flops: :func:`forward_flops` of one item text.
        llm_dim: the LLM's vector width (a float32 index holds ``4 * llm_dim`` bytes per item).
        median_history: the median user's history length (item-kNN sums that many rows).
        knn_nnz: stored similarities of item-kNN (about 20 bytes each: value, index, pointer).
        sasrec: SASRec's config (``d_model``, ``n_layers``, ``max_len``); its blocks hold about
            ``12 * d_model**2`` weights each.
        towers: the three towers' :class:`~llmrec_lib.recgpt.towers.TowerConfig`; the tag tower
            is an MLP over the ``text_dim``-wide MiniLM token-embedding mean.
        text_dim: the width of the tag tower's input.
        llm_best_long: whether chapter 03's LinkedIn arm (whole history + prior) runs the second
            recipe's longer prompt; it adds the mean of ``median_history`` item vectors.

    Returns:
        arm name -> its :class:`ArmCost`.
    """
    per_item_vector = 4 * llm_dim * n_items
    llm_score = 2 * llm_dim * n_items
    llm_fresh = f"one forward of its text ({llm_item_flops / 1e9:.2f} GFLOP)"
    knn = ArmCost(2 * median_history * knn_nnz / n_items, 0.0, 20 * knn_nnz,
                  "ratings, then a refit of the similarities")
    sas_params = 12 * sasrec["d_model"] ** 2 * sasrec["n_layers"]
    llm = ArmCost(llm_user_flops, llm_score, per_item_vector, llm_fresh)
    best_flops = (llm_long_user_flops if llm_best_long else llm_user_flops) + median_history * llm_dim
    best = replace(llm, user_flops=best_flops)
    tag_mlp = 2 * (text_dim * towers.hidden + towers.hidden * towers.dim)
    tower = ArmCost(towers.max_history * towers.dim + tag_mlp, 2 * towers.dim * n_items,
                    4 * towers.dim * n_items, "nothing for its features; ratings for its ID row")
    return {
        "popularity": ArmCost(0.0, n_items, 8 * n_items, "enough ratings to rise in the counts"),
        "item-kNN": knn,
        "SASRec": ArmCost(2 * sas_params * sasrec["max_len"], 2 * sasrec["d_model"] * n_items,
                          4 * sasrec["d_model"] * n_items, "ratings, then retraining its ID embedding"),
        "LLM dual encoder": llm,
        "LLM dual encoder + Matryoshka": llm,
        "LLM dual encoder, 2 hard negatives (400 steps)": llm,
        "LLM, mixed negatives + log-Q": replace(llm, user_flops=llm_long_user_flops),
        "LLM, whole history + prior": best,
        # the two-source lists run both sources in full; merging (slots, or reciprocal
        # ranks) costs a sort, not multiply-adds, and cold slots reuse the LLM's scores
        **{name: ArmCost(best_flops + knn.user_flops, llm_score, per_item_vector + knn.index_bytes,
                         "one forward of its text (the LLM source); ratings for item-kNN")
           for name in ("item-kNN + LLM multi-source", "item-kNN + LLM rank fusion",
                        "item-kNN + LLM rank fusion + cold slots")},
        **{f"three towers, {who}{tags} tags": tower
           for who in ("", "no user ID, ") for tags in ("LLM", "rule")},
    }


# --------------------------------------------------------------------------------------------
# 5. The RecGPT bill: offline generation for every user, every refresh
# --------------------------------------------------------------------------------------------


def recgpt_run_tokens(setting, run: str = "ch06", *, source: str = "fine-tuned", stage: str = "valid",
                      artifacts=None):
    """Per user of a committed RecGPT run: the tokens its two prompts held and its answers took.

    ``run="ch06"``: chapter 06's LLM_UI -> LLM_IT (``generations.jsonl``, one ``source``);
    ``run="ch07"``: chapter 07's second LLM_IT (``tagger/tags.jsonl``, one ``stage``), whose
    interests come from chapter 06's adapter. The prompts are rebuilt with today's code
    (:meth:`recgpt.Setting.stage_inputs`, :func:`recgpt.interest_prompt`, :func:`recgpt.tag_prompt`
    or :func:`tagger.tag_prompt`) and counted with ``setting.tokenizer``; ``*_sha_ok`` says whether
    a rebuilt prompt hashes to the one the run stored, i.e. whether it is the prompt answered.
    Answer tokens are the stored text re-tokenised (``tagger`` stores the same count as
    ``new_tokens``). The ch07 file keeps the parsed interests, not their raw text, so its
    ``interest_new_tokens`` is NaN: the caller must say what it uses instead.

    Args:
        setting: the data, split and tokenizer (:func:`recgpt.build_setting`).
        run: "ch06" or "ch07".
        source: the producer of ch06's generations ("fine-tuned", "zero-shot").
        stage: the stage of ch07's tags.
        artifacts: the RecGPT artifacts folder (default ``artifacts/recgpt``).

    Returns:
        A DataFrame, one row per user: user_id, interest_prompt_tokens, tag_prompt_tokens,
        interest_new_tokens, tag_new_tokens, history_tokens, interest_sha_ok, tag_sha_ok,
        n_interests, n_tags.
    """
    import pandas as pd

    from llmrec_lib import recgpt
    from llmrec_lib.recgpt import tagger

    art = Path(artifacts) if artifacts is not None else recgpt.artifacts_dir()
    tok = setting.tokenizer

    def n_tok(s: str) -> int:
        return len(tok(s, add_special_tokens=False)["input_ids"])

    rows = []
    if run == "ch06":
        gen = recgpt.read_generations(art / recgpt.GENERATIONS)
        gen = gen[gen["source"] == source]
        if gen.empty:
            raise ValueError(f"no generations with source={source!r} in {art / recgpt.GENERATIONS}")
        by = {t: g.set_index("user_id") for t, g in gen.groupby("task")}
        users = sorted(int(u) for u in by["interests"].index)
        inputs = setting.stage_inputs("test", users=users)
        for u in users:
            h = inputs["history_text"][u]
            gi, gt = by["interests"].loc[u], by["tags"].loc[u]
            p_int = recgpt.interest_prompt(h, recgpt.N_INTERESTS)
            ints = recgpt.parse_phrases(gi["text"], recgpt.N_INTERESTS).items
            p_tag = recgpt.tag_prompt(h, ints, recgpt.N_TAGS)
            rows.append({"user_id": u, "interest_prompt_tokens": n_tok(p_int), "tag_prompt_tokens": n_tok(p_tag),
                         "interest_new_tokens": float(n_tok(gi["text"])), "tag_new_tokens": float(n_tok(gt["text"])),
                         "history_tokens": n_tok(h), "interest_sha_ok": recgpt.short_sha(p_int) == gi["prompt_sha"],
                         "tag_sha_ok": recgpt.short_sha(p_tag) == gt["prompt_sha"], "n_interests": len(ints),
                         "n_tags": len(recgpt.parse_phrases(gt["text"], recgpt.N_TAGS).items)})
    elif run == "ch07":
        path = art / tagger.OUT / "tags.jsonl"
        recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        recs = [r for r in recs if r["stage"] == stage]
        if not recs:
            raise ValueError(f"no rows with stage={stage!r} in {path}")
        inputs = setting.stage_inputs(stage, users=[int(r["user_id"]) for r in recs])
        for r in recs:
            u = int(r["user_id"])
            h = inputs["history_text"][u]
            p_int = recgpt.interest_prompt(h, recgpt.N_INTERESTS)
            p_tag = tagger.tag_prompt(h, tagger.category_summary(inputs["liked"][u], setting.itags), r["interests"])
            n_new = n_tok(r["text"])
            rows.append({"user_id": u, "interest_prompt_tokens": n_tok(p_int), "tag_prompt_tokens": n_tok(p_tag),
                         "interest_new_tokens": math.nan, "tag_new_tokens": float(r.get("new_tokens", n_new)),
                         "history_tokens": n_tok(h), "interest_sha_ok": None,
                         "tag_sha_ok": recgpt.short_sha(p_tag) == r["prompt_sha"] and n_new == r.get("new_tokens", n_new),
                         "n_interests": len(r["interests"]), "n_tags": len(r["tags"])})
    else:
        raise ValueError(f"run must be 'ch06' or 'ch07', got {run!r}")
    return pd.DataFrame(rows)


def recgpt_bill(scenarios: dict):
    """What one refresh of every user's LLM output costs, per scenario (plain arithmetic).

    ``scenarios``: name -> {``users``, ``refresh_days``, ``prompt_tokens`` and ``new_tokens``
    (per user per refresh, all prompts and answers together), and the speed of one device:
    either ``seconds_per_user`` (measured end to end) or ``prompt_tokens_per_s`` and
    ``new_tokens_per_s`` (prefill and decode rates)}. Returns a DataFrame, one row per scenario:
    the inputs, ``tokens_per_refresh``, ``device_seconds_per_user``, ``device_hours_per_refresh``
    and ``devices_all_day`` (devices busy around the clock to finish each refresh within its
    period).

    Args:
        scenarios: name -> its inputs, as above.

    Returns:
        The table above, one row per scenario.
    """
    import pandas as pd

    rows = {}
    for name, s in scenarios.items():
        users, days = float(s["users"]), float(s["refresh_days"])
        p, n = float(s["prompt_tokens"]), float(s["new_tokens"])
        if users < 0 or days <= 0 or p < 0 or n < 0:
            raise ValueError(f"{name}: users, tokens must be >= 0 and refresh_days > 0")
        if "seconds_per_user" in s:
            per_user = float(s["seconds_per_user"])
        else:
            rp, rn = float(s["prompt_tokens_per_s"]), float(s["new_tokens_per_s"])
            if rp <= 0 or rn <= 0:
                raise ValueError(f"{name}: token rates must be positive")
            per_user = p / rp + n / rn
        hours = users * per_user / 3600
        rows[name] = {"users": users, "refresh_days": days, "prompt_tokens": p, "new_tokens": n,
                      "tokens_per_refresh": users * (p + n), "device_seconds_per_user": per_user,
                      "device_hours_per_refresh": hours, "devices_all_day": hours / (days * 24)}
    return pd.DataFrame(rows).T


def generation_flops(n_params: float, prompt_tokens: float, new_tokens: float, n_layers: int,
                     hidden: int) -> tuple[float, float]:
    """``(prefill, decode)`` FLOPs of one prompt and its answer (:func:`forward_flops`): the
    prompt in one pass over its own length, each new token attending to the prompt plus, on
    average, half the answer.

    Args:
        n_params: the transformer's weights.
        prompt_tokens: the prompt's length.
        new_tokens: the answer's length.
        n_layers: the layer count.
        hidden: the hidden width.

    Returns:
        (prefill, decode) FLOPs.
    """
    prefill = forward_flops(n_params, prompt_tokens, n_layers, hidden, prompt_tokens)
    decode = forward_flops(n_params, new_tokens, n_layers, hidden, prompt_tokens + new_tokens / 2)
    return prefill, decode


# --------------------------------------------------------------------------------------------
# 6. Quality against scale, from committed runs
# --------------------------------------------------------------------------------------------


def checkpoint_curve(adapter_dir, metric: str = "eval_recall@50"):
    """The validation metric a committed adapter's run logged during training.

    Reads ``encoder.json`` (``meta.evals``, written when the run was started with
    ``--eval-every``) and returns a DataFrame: step, pairs (step x the run's mean pairs per
    step, ``pairs_seen / steps_done``), ``metric``. Empty when the run logged no evaluation.

    Args:
        adapter_dir: the committed adapter's folder.
        metric: the logged metric to read.

    Returns:
        The curve, one row per logged evaluation.
    """
    import pandas as pd

    meta = json.loads((Path(adapter_dir) / "encoder.json").read_text())["meta"]
    per_step = meta["pairs_seen"] / max(meta["steps_done"], 1)
    rows = [{"step": e["step"], "pairs": e["step"] * per_step, metric: e[metric]}
            for e in meta.get("evals", []) if metric in e]
    return pd.DataFrame(rows, columns=["step", "pairs", metric])


def log_trend(x, y, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Least-squares fit ``y = a + b log2(x)``: ``b`` is the change per doubling of ``x``.

    Args:
        x: the sizes (positive), at least 3.
        y: the measured values.
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        A dict: a, b, r2, the residual standard deviation, and ``b_lo, b_hi``: a 95% interval for the
        slope from a bootstrap over the points (with 4-6 points it is wide, and should be).
        ``predict(x)`` gives the trend at new ``x`` (an extrapolation outside the measured
        range).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3 or (x <= 0).any():
        raise ValueError("need at least 3 points with positive x")
    lx = np.log2(x)
    b, a = np.polyfit(lx, y, 1)
    resid = y - (a + b * lx)
    ss = float(((y - y.mean()) ** 2).sum())
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(lx[i]) > 0:
            slopes.append(np.polyfit(lx[i], y[i], 1)[0])
    lo, hi = np.quantile(slopes, [0.025, 0.975])
    return {"a": float(a), "b": float(b), "r2": 1 - float((resid ** 2).sum()) / ss if ss > 0 else 1.0,
            "resid_sd": float(resid.std(ddof=2)) if len(x) > 2 else math.nan, "b_lo": float(lo), "b_hi": float(hi),
            "predict": lambda z: a + b * np.log2(np.asarray(z, dtype=np.float64))}


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """The command line: ``python -m llmrec_lib.scaling ddp-worker --out DIR ...``, one process
    of :func:`launch_ddp`'s data-parallel run (torchrun starts it).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0.
    """
    ap = argparse.ArgumentParser(prog="python -m llmrec_lib.scaling")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("ddp-worker", help="one process of a data-parallel run (launch with torchrun)")
    w.add_argument("--out", required=True)
    w.add_argument("--global-batch", type=int, default=16)
    w.add_argument("--steps", type=int, default=12)
    w.add_argument("--n-layers", type=int, default=4, help="0: all of the backbone's layers")
    w.add_argument("--backbone", default=None, help="default: the recipe's (smollm2-135m)")
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--comm-repeats", type=int, default=10)
    args = ap.parse_args(argv)
    _ddp_worker(Path(args.out), args.global_batch, args.steps, args.n_layers or None, args.threads,
                args.comm_repeats, args.backbone)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
