"""Train several recipes at once on one machine, publish each, and store its test lists.

A GPU runs the book's small encoder far below its capacity, so recipes trained side by side,
one process each, finish sooner than one after another. Each job is exactly the book's own
commands, in order:

    python -m llmrec_lib.recipes train NAME --mode full [--eval-every E] --max-seconds S
    python -m llmrec_lib.recipes evaluate NAME [--whole-history W B ...]

``--max-seconds`` stops a job that would outrun the deadline at a checkpoint: it publishes
nothing, and its checkpoint folder (``.cache/runs/NAME-full``) is what the rerun resumes from.
With ``--pack DIR`` every job ends as ``DIR/NAME.tar``, holding the published adapter with its
test lists, or the checkpoint folder of an unfinished run, and the job's log.

Usage (the GPU run of 2026-12-04; see results/full/README.md):

    python tools/train_recipes.py mixed-seed1:200:0,0.02 scale-layers30 matryoshka-seed1:800 \\
        --deadline 420 --pack $OUT

Each job is ``NAME[:EVAL_EVERY[:W,B[;W,B...]]]``: the validation interval (0: none) and the
serving points whose test lists to store as well.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llmrec_lib import config  # noqa: E402  (after the path: the script runs from tools/)


def parse_job(spec: str) -> tuple[str, int, list[tuple[str, str]]]:
    """``NAME[:EVAL_EVERY[:W,B[;W,B...]]]`` -> (name, eval_every, serving points)."""
    bad = SystemExit(f"bad job {spec!r}: write NAME[:EVAL_EVERY[:W,B[;W,B...]]]")
    parts = spec.split(":")
    if not parts[0] or len(parts) > 3:
        raise bad
    try:
        every = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        points = [
            tuple(float(v) for v in p.split(",", 1))
            for p in (parts[2:] or [""])[0].split(";")
            if p
        ]
    except ValueError:
        raise bad from None
    if any(len(p) != 2 for p in points):
        raise bad
    return parts[0], every, [(f"{w:g}", f"{b:g}") for w, b in points]


def run_job(spec: str, deadline: float, pack: Path | None) -> str:
    """Train, publish and evaluate one recipe; pack what it made. Returns a one-line status."""
    name, every, points = parse_job(spec)
    log_path = (pack or config.cache_dir()) / f"{name}.log"
    py = [sys.executable, "-m", "llmrec_lib.recipes"]
    budget = deadline - time.time()
    train = [*py, "train", name, "--mode", "full", "--max-seconds", f"{budget:.0f}"]
    if every:
        train += ["--eval-every", str(every)]
    steps = [train, [*py, "evaluate", name]]
    steps += [[*py, "evaluate", name, "--whole-history", w, b] for w, b in points]
    t0 = time.time()
    status = "published"
    with open(log_path, "w") as log:
        for cmd in steps:
            log.write("$ " + " ".join(cmd[1:]) + "\n")
            log.flush()
            rc = subprocess.run(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            ).returncode
            if rc:
                status = f"failed (exit {rc}) at: {' '.join(cmd[2:5])}"
                break
            record = ROOT / "artifacts" / "adapters" / name / "encoder.json"
            if cmd is train and not (record.is_file() and record.stat().st_mtime >= t0):
                status = "stopped at the deadline: checkpoint packed"
                break
    done = f"{name}: {status} after {time.time() - t0:.0f} s"
    if pack is not None:
        with tarfile.open(pack / f"{name}.tar", "w") as tar:
            adapter = ROOT / "artifacts" / "adapters" / name
            run_dir = config.cache_dir("runs") / f"{name}-full"
            if status == "published" and adapter.is_dir():
                tar.add(adapter, arcname=f"artifacts/adapters/{name}")
            elif run_dir.is_dir():
                tar.add(run_dir, arcname=f"runs/{name}-full")
            tar.add(log_path, arcname=f"logs/{name}.log")
        log_path.unlink()
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", nargs="+", help="NAME[:EVAL_EVERY[:W,B[;W,B...]]]")
    parser.add_argument(
        "--deadline",
        type=float,
        required=True,
        help="seconds from now after which no training step starts",
    )
    parser.add_argument("--parallel", type=int, default=0, help="jobs at once (0: all)")
    parser.add_argument(
        "--pack", type=Path, default=None, help="folder for one NAME.tar per job"
    )
    args = parser.parse_args(argv)
    from llmrec_lib import recipes

    for spec in args.jobs:  # fail before anything starts
        name = parse_job(spec)[0]
        if name not in recipes.RECIPES:
            raise SystemExit(
                f"unknown recipe {name!r}: `python -m llmrec_lib.recipes list` lists them"
            )
    if args.pack is not None:
        args.pack.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.deadline
    with ThreadPoolExecutor(max_workers=args.parallel or len(args.jobs)) as pool:
        futures = [pool.submit(run_job, s, deadline, args.pack) for s in args.jobs]
        for f in futures:
            print(f.result(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
