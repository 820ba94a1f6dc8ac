"""The RecGPT pipeline: data, fine-tuning examples, generation, artifacts (chapters 06 and 07).

:func:`build_setting` loads everything the RecGPT chapters share once (data, split, item
texts, item tags, the teacher's base rates); :func:`sft_examples` turns the teacher's answers
into supervised fine-tuning pairs; :func:`generate_pipeline` runs LLM_UI then LLM_IT; and
:func:`run_full` is the resumable full-mode run behind the committed ``artifacts/recgpt``
(``python -m llmrec_lib.recgpt full``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data
from llmrec_lib.recgpt.compression import (
    history_prompt_text,
    reliable_behaviours,
    short_item_texts,
)
from llmrec_lib.recgpt.judges import ItemFacts
from llmrec_lib.recgpt.prompts import (
    format_answer,
    interest_prompt,
    parse_phrases,
    tag_prompt,
)
from llmrec_lib.recgpt.tags import artifacts_dir, item_tags
from llmrec_lib.recgpt.teacher import (
    phrase_base_rates,
    popular_tags,
    recent_tags,
    target_tags,
    teacher_interests,
)

N_INTERESTS = 5
N_TAGS = 6
HISTORY_BUDGET = 160  # tokens of compressed history in a prompt: SmolLM2 on 2 CPU cores
RECENT = 20  # ratings that count as "recent" for the freshness judge
NEXT_ITEMS = 5  # liked items after a cut point that define a training example's target tags
GEN_MAX_NEW_TOKENS = 48


@dataclass
class Setting:
    """Everything the RecGPT chapters share, built once from the data (training-time only)."""

    ml: object
    split: object
    train_tags: pd.DataFrame
    itags: pd.Series
    base_rate: pd.Series
    short: pd.Series
    facts: ItemFacts
    tokenizer: object
    short_len: pd.Series = None

    def __post_init__(self):
        if self.short_len is None:
            from llmrec_lib import text

            self.short_len = pd.Series(text.count_tokens(self.tokenizer, self.short.tolist(), add_special_tokens=False),
                                       index=self.short.index)

    def history(self, user_ratings: pd.DataFrame) -> tuple[str, list[int]]:
        """A user's prompt history (:data:`HISTORY_BUDGET` tokens) and the items it shows."""
        return history_prompt_text(user_ratings, self.short, self.tokenizer, HISTORY_BUDGET,
                                   item_len=self.short_len, return_items=True)

    def stage_inputs(self, stage: str = "test", users=None) -> dict:
        """Per user of ``stage``: visible reliable ratings, liked history items, future liked
        items (the judging window), recent items (freshness) and the prompt's history text."""
        hist = reliable_behaviours(self.split.history(stage))
        users = self.split.users(stage) if users is None else np.asarray(list(users))
        targets = self.split.targets(stage)
        fut = {int(u): g["item_id"].tolist() for u, g in targets.groupby("user_id")}
        allr = self.split.history(stage)
        out = {"users": [int(u) for u in users], "liked": {}, "future": {}, "recent": {}, "history_text": {},
               "shown_liked": {}}
        by_user = dict(tuple(hist.groupby("user_id")))
        recent = {int(u): g["item_id"].tolist()[-RECENT:] for u, g in allr[allr["user_id"].isin(users)].groupby("user_id")}
        for u in out["users"]:
            r = by_user.get(u, hist.iloc[:0])
            out["liked"][u] = r.loc[r["liked"], "item_id"].tolist()
            out["future"][u] = fut.get(u, [])
            out["recent"][u] = recent.get(u, [])
            out["history_text"][u], shown = self.history(r)
            liked_set = set(out["liked"][u])
            out["shown_liked"][u] = [i for i in shown if i in liked_set]
        return out


def build_setting(data_dir=None, tokenizer=None, verify: bool | None = None) -> Setting:
    """Load MovieLens, split it per user (the book's split), and derive tags, base rates and
    judge facts from training-time data only.

    ``verify`` is passed to :func:`data.load_movielens` (a chapter's ``verify_data``
    parameter): None follows ``LLMREC_DATA_VERIFY``, False runs on unverified data in the
    MovieLens layout (a reader's own, or a derived copy; ``tags.csv`` may be missing).

    Args:
        data_dir: the MovieLens folder (default: ``LLMREC_DATA_DIR`` or the book's data).
        tokenizer: the tokenizer that measures prompt budgets (default: SmolLM2-135M's).
        verify: check the data's checksums (see above).

    Returns:
        The :class:`Setting`: data, split, tags, base rates and facts.
    """
    from llmrec_lib import backbones, text

    ml = data.load_movielens(data_dir, verify=verify)
    split = data.per_user_split(ml.ratings)
    tt = text.training_tags(ml.tags, split.train)
    itags = item_tags(ml.movies, tt)
    pos = split.train[split.train["rating"] >= data.POSITIVE_MIN]
    tok = tokenizer if tokenizer is not None else backbones.load_tokenizer("smollm2-135m")
    return Setting(ml, split, tt, itags, phrase_base_rates(pos, itags), short_item_texts(ml.movies),
                   ItemFacts.build(ml.movies, tt), tok)


def sft_examples(setting: Setting, *, per_user: int = 2, min_before: int = 10, seed: int = 0,
                 users=None) -> pd.DataFrame:
    """Fine-tuning examples for both tasks, from the *training* ratings only.

    For each user, up to ``per_user`` cut points are drawn among their liked training ratings
    that have at least ``min_before`` likes before and :data:`NEXT_ITEMS` after (still in
    training). At a cut the model sees the compressed history strictly before it (what fits
    :data:`HISTORY_BUDGET`); the answers are the teacher's interests on the liked items that
    prompt shows (:func:`teacher_interests`, task "interests": the teacher reads what the
    student reads, so the answer can be learned from the prompt) and the tags of the next liked
    items (:func:`target_tags`, task "tags"; its prompt shows the teacher's interests, as
    LLM_IT reads LLM_UI's output).

    Args:
        setting: the data and split (:func:`build_setting`).
        per_user: the most cut points per user.
        min_before: the fewest likes before a cut.
        seed: the seed that draws the cuts.
        users: draw from these users only (default: every user).

    Returns:
        A DataFrame: user_id, cut (timestamp), task, prompt, answer.
    """
    rel = reliable_behaviours(setting.split.train)
    rng = np.random.default_rng(seed)
    rows = []
    if users is not None:
        rel = rel[rel["user_id"].isin(list(users))]
    for u, g in rel.groupby("user_id"):
        g = g.sort_values(["timestamp", "item_id"], kind="stable")
        liked = g[g["liked"]]
        ts = liked["timestamp"].to_numpy()
        ok = [k for k in range(min_before, len(liked) - NEXT_ITEMS + 1)
              if (ts[:k] < ts[k]).sum() >= min_before]
        if not ok:
            continue
        for k in sorted(rng.choice(ok, size=min(per_user, len(ok)), replace=False).tolist()):
            cut = int(ts[k])
            before = g[g["timestamp"] < cut]
            liked_before = before.loc[before["liked"], "item_id"].tolist()
            nxt = liked["item_id"].iloc[k : k + NEXT_ITEMS].tolist()
            text, shown = setting.history(before)
            if not text:
                continue
            liked_set = set(liked_before)
            shown_liked = [i for i in shown if i in liked_set]
            ints = teacher_interests(shown_liked, setting.itags, setting.base_rate, n=N_INTERESTS)
            tags = target_tags(nxt, shown_liked, setting.itags, n=N_TAGS)
            if not ints or not tags:
                continue
            rows.append((int(u), cut, "interests", interest_prompt(text, N_INTERESTS), format_answer(ints)))
            rows.append((int(u), cut, "tags", tag_prompt(text, ints, N_TAGS), format_answer(tags)))
    return pd.DataFrame(rows, columns=["user_id", "cut", "task", "prompt", "answer"])


def generate_pipeline(generator, inputs: dict, users: Sequence[int], *, progress: bool = True) -> dict:
    """LLM_UI then LLM_IT for ``users``: interests from the history, then tags from the
    history and those interests.

    Args:
        generator: anything with ``generate(prompts, progress=...)`` (a model, a cache, a fake).
        inputs: the stage's inputs (:meth:`Setting.stage_inputs`), history_text per user.
        users: the users to generate for.
        progress: show progress bars.

    Returns:
        {"interests": {u: phrases}, "tags": {u: phrases}, "raw": [{"user_id", "task", "text",
        "ok", "reason"}], "reports": {task: ParseReport}}.
    """
    from llmrec_lib import generation

    users = [int(u) for u in users]
    p_int = [interest_prompt(inputs["history_text"][u], N_INTERESTS) for u in users]
    texts = generator.generate(p_int, progress=progress)
    res_i, rep_i = generation.parse_all(texts, parse_phrases, name="interests", n=N_INTERESTS)
    interests = {u: r.items for u, r in zip(users, res_i)}
    p_tag = [tag_prompt(inputs["history_text"][u], interests[u], N_TAGS) for u in users]
    texts_t = generator.generate(p_tag, progress=progress)
    res_t, rep_t = generation.parse_all(texts_t, parse_phrases, name="tags", n=N_TAGS)
    tags = {u: r.items for u, r in zip(users, res_t)}
    raw = [{"user_id": u, "task": task, "text": r.raw, "ok": r.ok, "reason": r.reason,
            "prompt_sha": short_sha(p)}
           for task, rs, ps in (("interests", res_i, p_int), ("tags", res_t, p_tag))
           for u, r, p in zip(users, rs, ps)]
    return {"interests": interests, "tags": tags, "raw": raw, "reports": {"interests": rep_i, "tags": rep_t}}


def short_sha(s: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``s``: how committed generations name the
    prompt they answered, so a test can check the code still writes it.

    Args:
        s: the text (a prompt).

    Returns:
        16 hex digits.
    """
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()[:16]


def eval_users(setting: Setting, n: int | None, seed: int = 0, stage: str = "test") -> list[int]:
    """The users an LLM run covers: all of ``stage``'s users, or a seeded sample of ``n``.

    Args:
        setting: the data and split.
        n: the sample size; None (or at least the stage's users) for all.
        seed: the sample's seed.
        stage: "test" or "valid".

    Returns:
        The user ids, sorted.
    """
    users = setting.split.users(stage)
    if n is None or n >= len(users):
        return [int(u) for u in users]
    return sorted(int(u) for u in np.random.default_rng(seed).choice(users, size=n, replace=False))


ADAPTER = "adapter"
GENERATIONS = "generations.jsonl"
META = "meta.json"


def split_examples(ex: pd.DataFrame, val_share: float = 0.05, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) examples, split by user so no validation user is trained on.

    Args:
        ex: the examples (:func:`sft_examples`), with user_id.
        val_share: the share of users held out.
        seed: the seed that draws them.

    Returns:
        (train, validation), each with a fresh index.
    """
    users = np.sort(ex["user_id"].unique())
    n_val = max(1, int(round(val_share * len(users))))
    val = set(np.random.default_rng(seed).choice(users, size=n_val, replace=False).tolist())
    is_val = ex["user_id"].isin(val)
    return ex[~is_val].reset_index(drop=True), ex[is_val].reset_index(drop=True)


def default_sft_config(mode: str = "full", seed: int = 0):
    """The LoRA fine-tuning of chapter 06's student: 120 steps of 8 examples at 3e-4 in full
    mode; two steps of two in quick mode, enough to test the path, not to learn.

    Args:
        mode: "full" or "quick".
        seed: the training seed.

    Returns:
        The :class:`sft.SFTConfig`.
    """
    from llmrec_lib import sft

    if mode == "full":
        return sft.SFTConfig(steps=120, batch_size=8, lr=3e-4, warmup=6, max_len=384, seed=seed, save_every=10)
    return sft.SFTConfig(steps=2, batch_size=2, lr=3e-4, warmup=0, max_len=384, seed=seed, save_every=1)


def generation_config():
    """Greedy decoding, at most :data:`GEN_MAX_NEW_TOKENS` new tokens: a numbered list of
    phrases fits, a rambling answer is cut.

    Returns:
        The :class:`generation.GenerationConfig`.
    """
    from llmrec_lib import generation

    return generation.GenerationConfig(max_new_tokens=GEN_MAX_NEW_TOKENS, batch_size=8)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write ``rows`` as JSON lines to ``path`` through a temporary file, so an interrupted
    run never leaves half a file where a committed one was.

    Args:
        path: the file to write (its folder is made).
        rows: the records, one a line.
    """
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(path)


def read_generations(path: Path | None = None) -> pd.DataFrame:
    """The committed generations: user_id, task, source, text, ok, reason, prompt_sha.

    Args:
        path: the generations file (default ``artifacts/recgpt/generations.jsonl``).

    Returns:
        One row per generated text.
    """
    import json

    path = Path(path) if path is not None else artifacts_dir() / GENERATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m llmrec_lib.recgpt full` (see artifacts/recgpt/README.md)")
    return pd.DataFrame([json.loads(x) for x in path.read_text().splitlines() if x.strip()])


def phrases_from_generations(gen: pd.DataFrame, source: str, task: str) -> dict[int, list[str]]:
    """user_id -> parsed phrases of one (source, task) in the generations table (parsed again
    with the current :func:`parse_phrases`, so a parser fix applies to committed text).

    Args:
        gen: the generations table (:func:`read_generations`).
        source: the producer ("zero-shot", "fine-tuned", ...).
        task: "interests" or "tags".

    Returns:
        user_id -> phrases.
    """
    n = N_INTERESTS if task == "interests" else N_TAGS
    g = gen[(gen["source"] == source) & (gen["task"] == task)]
    if g.empty:
        raise ValueError(f"no generations for source={source!r}, task={task!r}; have "
                         f"{sorted(set(zip(gen['source'], gen['task'])))}")
    return {int(u): parse_phrases(t, n).items for u, t in zip(g["user_id"], g["text"])}


def run_full(*, n_users: int | None = 120, steps: int | None = None, seed: int = 0,
             out: Path | None = None, work: Path | None = None, command: str = "",
             backbone: str = "smollm2-135m", sft_overrides: dict | None = None,
             example_users: int | None = None, setting: Setting | None = None) -> dict:
    """The full-mode run behind chapters 06 and 07, resumable at every stage:

    1. fine-tuning examples from training data (:func:`sft_examples`), split by user;
    2. LoRA SFT of SmolLM2 on both tasks (checkpoints in a folder of ``work`` named after the
       config and examples; a rerun with the same settings resumes, other settings start anew);
    3. answer loss on held-out users, base vs fine-tuned;
    4. zero-shot and fine-tuned LLM_UI -> LLM_IT for ``n_users`` test users (cached on disk
       by :class:`generation.CachedGenerator`, so a rerun regenerates nothing);
    5. artifacts in ``out`` (default ``artifacts/recgpt``): the adapter, every generation,
       the predicted tags of every test user (``tags_test.jsonl``), and ``meta.json``.

    ``backbone``, ``sft_overrides`` (SFTConfig fields), ``example_users`` (fine-tune on the
    examples of that many users only) and ``setting`` exist for the test that runs this whole
    function on tiny-llama.

    Args:
        n_users: test users to generate for (None: all).
        steps: SFT steps (default: :func:`default_sft_config`'s).
        seed: the seed of examples, training and user sample.
        out: where to write the artifacts.
        work: the cache of generations and SFT checkpoints.
        command: the command line, recorded in meta.json.
        backbone: the base model's name.
        sft_overrides: SFTConfig fields to override.
        example_users: fine-tune on the examples of that many users only.
        setting: the data and split (default :func:`build_setting`).

    Returns:
        The run's meta (what ``meta.json`` holds).
    """
    import dataclasses
    import json
    import time

    from llmrec_lib import config, sft

    out = Path(out) if out is not None else artifacts_dir()
    work = Path(work) if work is not None else config.cache_dir("recgpt-sft")
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    setting = setting if setting is not None else build_setting()
    ex_users = None
    if example_users is not None:
        ex_users = np.sort(setting.split.train["user_id"].unique())[:example_users].tolist()
    ex = sft_examples(setting, seed=seed, users=ex_users)
    tr, va = split_examples(ex, seed=seed)
    timings["data"] = time.perf_counter() - t
    print(f"{len(tr)} training and {len(va)} validation examples", flush=True)

    cfg = adjust_sft_config(default_sft_config("full", seed), steps, sft_overrides)
    val_pairs = list(zip(va["prompt"], va["answer"]))
    adapter_dir = out / ADAPTER
    fitted = sft.fit(backbone, list(zip(tr["prompt"], tr["answer"])), val_pairs, cfg, work, adapter_dir,
                     command=command)
    timings["sft"] = fitted["seconds"]
    base_val, tuned_val = fitted["val_loss_base"], fitted["val_loss_tuned"]

    users = eval_users(setting, n_users, seed)
    inputs = setting.stage_inputs("test")
    reports, tag_rows = _generate_sources(inputs, users, backbone, adapter_dir, work, out, timings)
    write_jsonl(out / "tags_test.jsonl", tag_rows + baseline_tag_rows(setting, inputs))
    meta = {
        "command": command, "backbone": backbone, "seed": seed, "n_users": len(users), "users": users,
        "n_train_examples": len(tr), "n_val_examples": len(va), "sft_config": sft.config_dict(cfg),
        "val_loss_base": base_val, "val_loss_tuned": tuned_val, "parse_reports": reports,
        "generation_config": dataclasses.asdict(generation_config()), "history_budget": HISTORY_BUDGET,
        "timings_s": timings, "wall_s": time.perf_counter() - t_all,
        "hardware": hardware(),
        "examples_sha": short_sha("".join(ex["prompt"] + ex["answer"])),
    }
    (out / META).write_text(json.dumps(meta, indent=1, default=float))
    return meta


def _generate_sources(inputs: dict, users: Sequence[int], backbone: str, adapter_dir: Path, work: Path,
                      out: Path, timings: dict) -> tuple[dict, list[dict]]:
    """Step 4 of :func:`run_full`: LLM_UI -> LLM_IT for ``users``, zero-shot then fine-tuned
    (``adapter_dir``), cached under ``work``; ``out/generations.jsonl`` is written after each
    source (a kill keeps what finished). Returns the parse reports per source and the
    predicted-tag rows (user, tags, source)."""
    import time

    from llmrec_lib import generation

    rows, reports, tag_rows = [], {}, []
    for source, adapter in (("zero-shot", None), ("fine-tuned", str(adapter_dir))):
        t = time.perf_counter()
        gen = generation.CachedGenerator(generation.LocalGenerator(backbone, adapter, config=generation_config()),
                                         cache_dir=work / "generations")
        res = generate_pipeline(gen, inputs, users)
        timings[f"generate_{source}"] = time.perf_counter() - t
        rows += [{**r, "source": source} for r in res["raw"]]
        reports[source] = {k: v.as_dict() for k, v in res["reports"].items()}
        tag_rows += [{"user_id": u, "tags": res["tags"][u], "source": source} for u in users]
        write_jsonl(out / GENERATIONS, rows)
        print(f"{source}: {timings[f'generate_{source}']:.0f} s", flush=True)
    return reports, tag_rows


def baseline_tag_rows(setting: Setting, inputs: dict) -> list[dict]:
    """Chapter 07's two baselines for every user of ``inputs``: the rule's tags
    (:func:`recent_tags` of the user's likes) and the same popular tags for everyone
    (:func:`popular_tags` of the training positives).

    Args:
        setting: the data, split and item tags.
        inputs: the stage's inputs, with users and liked items per user.

    Returns:
        One row per (user, baseline): user_id, tags, source.
    """
    pos = setting.split.train[setting.split.train["rating"] >= data.POSITIVE_MIN]
    pop = popular_tags(pos, setting.ml.movies, setting.itags, n=N_TAGS)
    rows = []
    for u in inputs["users"]:
        rows.append({"user_id": u, "tags": recent_tags(inputs["liked"][u], setting.itags, n=N_TAGS),
                     "source": "rule-based"})
        rows.append({"user_id": u, "tags": pop, "source": "popular"})
    return rows


def adjust_sft_config(cfg, steps: int | None = None, overrides: dict | None = None):
    """``cfg`` (an ``sft.SFTConfig``) with ``steps`` (its warm-up capped below them) and any
    ``overrides`` (SFTConfig fields): how every RecGPT run takes ``--steps`` and the tests'
    tiny settings.

    Args:
        cfg: the config to start from.
        steps: the steps to train (None: keep ``cfg``'s).
        overrides: SFTConfig fields to replace.

    Returns:
        A new config; ``cfg`` is unchanged.
    """
    import dataclasses

    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=int(steps), warmup=min(cfg.warmup, int(steps) - 1))
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg


def hardware() -> str:
    """The processor and torch's thread count, as a run's ``meta.json`` records them.

    Returns:
        For example "x86_64, 2 threads".
    """
    import platform

    import torch

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    """The command line: ``python -m llmrec_lib.recgpt full [--users N] [--steps S]
    [--seed S]`` runs :func:`run_full`.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0.
    """
    import argparse

    from llmrec_lib import config

    ap = argparse.ArgumentParser(prog="python -m llmrec_lib.recgpt",
                                 description="RecGPT full-mode run: SFT, generations and tags (chapters 06-07)")
    ap.add_argument("what", choices=["full"])
    ap.add_argument("--users", type=int, default=120, help="test users the LLMs generate for (0: all)")
    ap.add_argument("--steps", type=int, default=None, help="SFT steps (default: the full config's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    command = config.command_line("llmrec_lib.recgpt", argv)
    meta = run_full(n_users=args.users or None, steps=args.steps, seed=args.seed, command=command)
    print({k: meta[k] for k in ("val_loss_base", "val_loss_tuned", "wall_s")})
    return 0
