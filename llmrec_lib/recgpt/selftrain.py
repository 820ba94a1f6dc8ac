"""Judge-filtered self-training of LLM_UI, RecGPT's interest-mining recipe (chapter 06).

After distillation, RecGPT's student samples answers for many users; its judges keep the
answers that pass, and the student trains on them again (90k answers, 19k kept, in the
paper). This module runs that round in miniature on the chapter-06 student (the round-0
adapter, ``artifacts/recgpt/adapter``) and the chapter-06 judges:

1. **Generate.** :data:`N_PROMPTS` training cut points (``tagger.cut_points``: training data
   only, the next :data:`tagger.HORIZON` likes as the judging window), :data:`K_SAMPLES`
   sampled answers each (temperature :data:`TEMPERATURE`, nucleus :data:`TOP_P`).
2. **Judge and keep.** Every sample goes through ``recgpt.judge_interests`` against the
   population of all cut points; :func:`passes` is the filter, fixed before any sample was
   judged. A prompt keeps its best passing sample (:func:`pick`), so no prompt counts twice.
3. **Train.** The round-0 adapter is trained on for :data:`STEPS` steps, in three arms of
   equal compute: on the kept answers (*self-trained*), on the first sample of every prompt
   (*unfiltered*: what the judges add) and on the teacher's answers to the same prompts
   (*more teacher steps*: what the extra steps alone add).
4. **Measure.** Each arm mines interests (greedy) for chapter 06's test users; the chapter
   judges them beside round 0.

Run (resumable; everything cached under ``.cache/recgpt-selftrain``)::

    python -m llmrec_lib.recgpt.selftrain full        # writes artifacts/recgpt/selftrain/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data, recgpt
from llmrec_lib.recgpt import tagger

__all__ = ["K_SAMPLES", "N_PROMPTS", "ARMS", "passes", "pick", "judge_samples", "run_full", "load"]

N_PROMPTS = 240  # training cut points sampled for self-training
K_SAMPLES = 4  # sampled answers per prompt
TEMPERATURE = 0.8
TOP_P = 0.95
STEPS = 40  # per arm: 320 draws of 8, about one epoch of the unfiltered arm's 240 answers
LR = 1e-4  # half the first round's: the adapter is continued, not started
OUT = "selftrain"
ARMS = ("self-trained", "unfiltered", "more teacher steps")

# The filter, fixed before any sample was judged: every phrase backed by at least one liked
# film, most of them grounded, and categories that predict this user's next likes better
# than they predict an average user's.
MIN_GROUNDING = 0.6
MAX_HALLUCINATION = 0.0
MIN_PRECISION_LIFT = 0.0  # strictly above


def passes(judged: pd.DataFrame) -> pd.Series:
    """The judge filter: a full answer (:data:`recgpt.N_INTERESTS` phrases), hallucination at
    most :data:`MAX_HALLUCINATION`, grounding at least :data:`MIN_GROUNDING`, precision lift
    above :data:`MIN_PRECISION_LIFT` (NaN lift, no judging window, fails).

    Args:
        judged: one row per answer with n, grounding, hallucination and precision_lift
            (:func:`recgpt.judge_interests`'s columns).

    Returns:
        A boolean Series on ``judged``'s index: True where the answer passes.
    """
    data.require_columns(judged, ("n", "grounding", "hallucination", "precision_lift"), "judged",
                         "Pass recgpt.judge_interests output.")
    lift = judged["precision_lift"].fillna(-np.inf)
    return ((judged["n"] == recgpt.N_INTERESTS) & (judged["hallucination"] <= MAX_HALLUCINATION)
            & (judged["grounding"] >= MIN_GROUNDING) & (lift > MIN_PRECISION_LIFT))


def pick(judged: pd.DataFrame) -> dict[int, int]:
    """prompt -> the sample to keep: among its passing samples, the highest grounding +
    precision lift, ties to the lower sample index. ``judged`` is indexed by (prompt,
    sample). Prompts with no passing sample are absent.

    Args:
        judged: the judge rates of every sample (see :func:`passes`), indexed by (prompt, sample).

    Returns:
        prompt -> the index of the sample kept.
    """
    if judged.index.nlevels != 2:
        raise ValueError("judged must be indexed by (prompt, sample)")
    ok = judged[passes(judged)]
    score = (ok["grounding"] + ok["precision_lift"]).rename("score").reset_index()
    score.columns = ["prompt", "sample", "score"]
    best = score.sort_values(["prompt", "score", "sample"], ascending=[True, False, True], kind="stable")
    return {int(p): int(s) for p, s in best.drop_duplicates("prompt")[["prompt", "sample"]].to_numpy()}


def judge_samples(samples: dict[tuple[int, int], list[str]], cuts: pd.DataFrame, facts,
                  population_answer: Sequence[str]) -> pd.DataFrame:
    """``recgpt.judge_interests`` for every (prompt row of ``cuts``, sample) -> phrases: the
    history is the liked films before the cut, the judging window the next likes, and the
    population (base rates, lifts) is every row of ``cuts``.

    Args:
        samples: (prompt row, sample) -> the sampled interest phrases.
        cuts: the training cut points, with liked_before and next_items per row.
        facts: the catalogue facts the judges check phrases against.
        population_answer: the one answer given to everybody, the baseline of precision lift.

    Returns:
        The judge rates, one row per (prompt, sample).
    """
    hist = {k: cuts["liked_before"].iloc[k[0]] for k in samples}
    fut = {k: cuts["next_items"].iloc[k[0]] for k in samples}
    out = recgpt.judge_interests(
        samples, hist, fut, facts, n_requested=recgpt.N_INTERESTS,
        population=dict(enumerate(cuts["liked_before"])), population_future=dict(enumerate(cuts["next_items"])),
        population_answer=list(population_answer))
    out.index = pd.MultiIndex.from_tuples(list(out.index), names=["prompt", "sample"])
    return out


def sample_config(seed: int):
    """How the student samples its answers: temperature :data:`TEMPERATURE` and nucleus
    :data:`TOP_P`, so the K samples of one prompt differ and the judges have something to pick.

    Args:
        seed: the sampling seed.

    Returns:
        The :class:`generation.GenerationConfig`.
    """
    from llmrec_lib import generation

    return generation.GenerationConfig(max_new_tokens=recgpt.GEN_MAX_NEW_TOKENS, temperature=TEMPERATURE,
                                       top_p=TOP_P, seed=seed, batch_size=8)


def sft_config(seed: int = 0):
    """The fine-tuning of each arm: :data:`STEPS` steps at :data:`LR`, half the first
    round's rate, since the round-0 adapter is continued rather than started afresh.

    Args:
        seed: the training seed.

    Returns:
        The :class:`sft.SFTConfig`.
    """
    from llmrec_lib import sft

    return sft.SFTConfig(steps=STEPS, batch_size=8, lr=LR, warmup=4, max_len=384, seed=seed, save_every=10)


def run_full(*, seed: int = 0, out: Path | None = None, work: Path | None = None, backbone: str = "smollm2-135m",
             student: str | None = None, test_users: Sequence[int] | None = None, command: str = "",
             setting: recgpt.Setting | None = None, n_prompts: int = N_PROMPTS, k_samples: int = K_SAMPLES,
             example_users=None, sft_overrides: dict | None = None, progress: bool = True) -> dict:
    """The self-training round, resumable at every stage (see the module docstring).

    ``student``: the round-0 adapter (default ``artifacts/recgpt/adapter``); ``test_users``:
    who the arms mine interests for (default: the users of ``artifacts/recgpt/meta.json``,
    chapter 06's). Writes ``out`` (default ``artifacts/recgpt/selftrain``): ``samples.jsonl``
    (every sample, its judge rates and whether it passed and was kept), one adapter per arm,
    ``generations.jsonl`` (test interests per arm, the layout of
    :func:`recgpt.read_generations`) and ``meta.json`` (the funnel, the filter, timings).
    ``example_users``, ``sft_overrides`` and ``setting`` exist for the tiny-llama test.

    Args:
        seed: the seed of sampling and training.
        out: where to write the run.
        work: the cache of generations and SFT checkpoints, what makes a rerun resume
            (default: the ``recgpt-selftrain`` cache folder).
        backbone: the base model's name.
        student: the round-0 adapter to continue.
        test_users: the users whose interests each arm mines.
        command: the command line, recorded in meta.json.
        setting: the data, split and catalogue facts (default :func:`recgpt.build_setting`).
        n_prompts: how many training cut points to sample answers for.
        k_samples: sampled answers per prompt.
        example_users: draw the cut points from these users only (default: every user).
        sft_overrides: SFTConfig fields to override (e.g. fewer steps in a test).
        progress: show progress bars.

    Returns:
        The run's meta (what ``meta.json`` holds).
    """
    import dataclasses
    import time

    from llmrec_lib import config, sft

    out = Path(out) if out is not None else recgpt.artifacts_dir() / OUT
    work = Path(work) if work is not None else config.cache_dir("recgpt-selftrain")
    student = str(recgpt.artifacts_dir() / recgpt.ADAPTER) if student is None else str(student)
    if test_users is None:
        test_users = json.loads((recgpt.artifacts_dir() / recgpt.META).read_text())["users"]
    test_users = [int(u) for u in test_users]
    t_all, timings = time.perf_counter(), {}
    setting = setting if setting is not None else recgpt.build_setting()

    t = time.perf_counter()  # 1. generate: K sampled answers per training prompt
    cuts = tagger.cut_points(setting, seed=seed, users=example_users)
    tr_idx = set(recgpt.split_examples(cuts.reset_index(), seed=seed)[0]["index"].tolist())
    pool = sorted(tr_idx)
    rows = sorted(np.random.default_rng(seed).choice(pool, size=min(n_prompts, len(pool)), replace=False).tolist())
    prompts, texts = _sample_answers(cuts, rows, backbone, student, work, k_samples, seed, progress)
    timings["generate"] = time.perf_counter() - t
    kept, funnel = _judge_and_keep(setting, cuts, rows, texts, k_samples, out)  # 2. judge, keep
    print(funnel, flush=True)

    train, held_out = _arm_examples(setting, cuts, rows, prompts, texts, kept, tr_idx)  # 3. three arms
    cfg = sft_config(seed)
    if sft_overrides:
        cfg = dataclasses.replace(cfg, **sft_overrides)
    fits = {}
    for arm in ARMS:
        if not train[arm]:
            raise RuntimeError(f"arm {arm!r} has no training answers (the filter kept nothing)")
        print(f"arm {arm}: {len(train[arm])} answers", flush=True)
        fits[arm] = sft.fit(backbone, train[arm], held_out, cfg, work / "sft", out / _slug(arm),
                            command=command, init_adapter=student, progress=progress)
    _mine_test_interests(setting, test_users, backbone, out, work, timings, progress)  # 4. test users
    meta = {
        "command": command, "backbone": backbone, "seed": seed, "student": str(config.relative_to_root(student)),
        "funnel": funnel, "filter": {"min_grounding": MIN_GROUNDING, "max_hallucination": MAX_HALLUCINATION,
                                     "min_precision_lift (strictly above)": MIN_PRECISION_LIFT},
        "sampling": {"k": k_samples, "temperature": TEMPERATURE, "top_p": TOP_P},
        "sft_config": sft.config_dict(cfg), "fits": fits, "test_users": test_users,
        "timings_s": {**timings, **{f"sft_{a}": f["seconds"] for a, f in fits.items()}},
        "wall_s": time.perf_counter() - t_all,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=float))
    return meta


def _sample_answers(cuts: pd.DataFrame, rows: list[int], backbone: str, student: str, work: Path,
                    k_samples: int, seed: int, progress: bool) -> tuple[list[str], dict[int, list[str]]]:
    """Step 1: the interest prompt of each training cut point in ``rows`` and ``k_samples``
    sampled answers to each from the round-0 ``student`` (sample ``s`` seeded ``seed + s``;
    cached, so a rerun regenerates nothing)."""
    from llmrec_lib import generation

    prompts = [recgpt.interest_prompt(cuts["history_text"].iloc[r], recgpt.N_INTERESTS) for r in rows]
    gen = generation.CachedGenerator(generation.LocalGenerator(backbone, student, config=sample_config(seed)),
                                     cache_dir=work / "generations")
    texts = {s: gen.generate(prompts, config=sample_config(seed + s), progress=progress) for s in range(k_samples)}
    return prompts, texts


def _judge_and_keep(setting: recgpt.Setting, cuts: pd.DataFrame, rows: list[int], texts: dict,
                    k_samples: int, out: Path) -> tuple[dict[int, int], dict]:
    """Step 2: every sample judged (:func:`judge_samples`), filtered (:func:`passes`) and the
    best passing one per prompt kept (:func:`pick`); writes ``out/samples.jsonl``. Returns the
    kept sample per prompt row and the funnel (how many answers survive each stage)."""
    from llmrec_lib import data

    pos = setting.split.train[setting.split.train["rating"] >= data.POSITIVE_MIN]
    constant = recgpt.population_categories(pos["item_id"], setting.facts, recgpt.N_INTERESTS)
    parsed = {(r, s): recgpt.parse_phrases(texts[s][j], recgpt.N_INTERESTS).items
              for j, r in enumerate(rows) for s in range(k_samples)}
    judged = judge_samples(parsed, cuts, setting.facts, constant)
    ok = passes(judged)
    kept = pick(judged)
    sample_rows = [{"prompt_row": r, "user_id": int(cuts["user_id"].iloc[r]), "sample": s, "text": texts[s][j],
                    **{c: (None if pd.isna(v) else float(v)) for c, v in judged.loc[(r, s)].items()},
                    "passed": bool(ok.loc[(r, s)]), "kept": kept.get(r) == s}
                   for j, r in enumerate(rows) for s in range(k_samples)]
    recgpt.write_jsonl(out / "samples.jsonl", sample_rows)
    funnel = {"prompts": len(rows), "generated": len(parsed),
              "parsed in full": int((judged["n"] == recgpt.N_INTERESTS).sum()), "passed": int(ok.sum()),
              "kept (one per prompt)": len(kept)}
    return kept, funnel


def _arm_examples(setting: recgpt.Setting, cuts: pd.DataFrame, rows: list[int], prompts: list[str],
                  texts: dict, kept: dict[int, int], tr_idx: set) -> tuple[dict[str, list], list]:
    """Step 3's data: each arm's (prompt, answer) pairs, all of equal compute and continuing the
    round-0 adapter (the kept samples; the first sample of every prompt, unfiltered; the
    teacher's answers), and the held-out teacher answers of the validation cut points."""
    j_of = {r: j for j, r in enumerate(rows)}

    def teacher_answer(r: int) -> str:
        return recgpt.format_answer(recgpt.teacher_interests(cuts["shown_liked"].iloc[r], setting.itags,
                                                             setting.base_rate, n=recgpt.N_INTERESTS))

    def prompt_of(r: int) -> str:
        return recgpt.interest_prompt(cuts["history_text"].iloc[r], recgpt.N_INTERESTS)

    teacher = {r: teacher_answer(r) for r in rows}
    train = {
        "self-trained": [(prompts[j_of[r]], texts[s][j_of[r]].strip()) for r, s in sorted(kept.items())],
        "unfiltered": [(prompts[j], texts[0][j].strip()) for j in range(len(rows))],
        "more teacher steps": [(prompts[j_of[r]], teacher[r]) for r in rows],
    }
    va_rows = [r for r in range(len(cuts)) if r not in tr_idx]
    return train, [(prompt_of(r), teacher_answer(r)) for r in va_rows]


def _mine_test_interests(setting: recgpt.Setting, test_users: list[int], backbone: str, out: Path,
                         work: Path, timings: dict, progress: bool) -> list[dict]:
    """Step 4: every arm mines interests for the test users (greedy, as round 0 did); writes
    ``out/generations.jsonl`` after each arm and the arm's time into ``timings``."""
    import time

    from llmrec_lib import generation

    inputs = setting.stage_inputs("test", users=test_users)
    test_prompts = [recgpt.interest_prompt(inputs["history_text"][u], recgpt.N_INTERESTS) for u in test_users]
    gen_rows = []
    for arm in ARMS:
        t = time.perf_counter()
        g = generation.CachedGenerator(
            generation.LocalGenerator(backbone, str(out / _slug(arm)), config=recgpt.generation_config()),
            cache_dir=work / "generations")
        res, rep = generation.parse_all(g.generate(test_prompts, progress=progress), recgpt.parse_phrases,
                                        name="interests", n=recgpt.N_INTERESTS)
        gen_rows += [{"user_id": u, "task": "interests", "source": arm, "text": r.raw, "ok": r.ok,
                      "reason": r.reason, "prompt_sha": recgpt.short_sha(p)}
                     for u, r, p in zip(test_users, res, test_prompts)]
        timings[f"test_{arm}"] = time.perf_counter() - t
        recgpt.write_jsonl(out / "generations.jsonl", gen_rows)
    return gen_rows


def _slug(arm: str) -> str:
    return "adapter-" + arm.replace(" ", "-")


def load(path: Path | None = None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """The committed run: (meta, samples, generations).

    Args:
        path: the run's folder (default ``artifacts/recgpt/selftrain``).

    Returns:
        (meta, samples, generations): the meta dict, one row per sample, one row per
        (arm, user) generation.
    """
    path = Path(path) if path is not None else recgpt.artifacts_dir() / OUT
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{path}/meta.json not found: run `python -m llmrec_lib.recgpt.selftrain full` "
                                "(see artifacts/recgpt/README.md)")
    samples = pd.DataFrame([json.loads(x) for x in (path / "samples.jsonl").read_text().splitlines() if x.strip()])
    return json.loads((path / "meta.json").read_text()), samples, recgpt.read_generations(path / "generations.jsonl")


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m llmrec_lib.recgpt.selftrain full [--prompts N]
    [--samples K] [--seed S]`` runs :func:`run_full` and prints its funnel.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0.
    """
    import argparse

    from llmrec_lib import config

    ap = argparse.ArgumentParser(prog="python -m llmrec_lib.recgpt.selftrain",
                                 description="Judge-filtered self-training of chapter 06's LLM_UI student")
    ap.add_argument("what", choices=["full"])
    ap.add_argument("--prompts", type=int, default=N_PROMPTS)
    ap.add_argument("--samples", type=int, default=K_SAMPLES)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    meta = run_full(seed=args.seed, n_prompts=args.prompts, k_samples=args.samples,
                    command=config.command_line("llmrec_lib.recgpt.selftrain", argv))
    print(meta["funnel"], round(meta["wall_s"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
