"""Explanations of what the three towers retrieve (RecGPT's LLM_RE) and their judges, chapter 08.

RecGPT writes a short reason per (tag, item) offline, with a chat model, into a lookup table:
serving looks the reason up instead of calling an LLM. Here SmolLM2 writes them
(:func:`explain_model`, :class:`ExplanationTable`) for the items chapter 08's selected model
retrieves, and three rule judges score them: *relevant* (the tag's category is one of the
item's genres), *faithful* (the text names no genre and no decade the item does not have) and
*grounded* (faithful and naming at least one fact of its own item); a shuffled-item control
says what the grounded judge gives text that is not about its item.

Run (writes ``artifacts/recgpt/explanations.json``)::

    python -m llmrec_lib.recgpt.explanations explain --mode quick --alpha 0.5 --b 0.8 --seed 0
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import config, data, text
from llmrec_lib.recgpt.towers import MODES, ThreeTowerModel, build
from llmrec_lib.recgpt.vocabulary import (
    GENRE_WORDS,
    mentioned_decades,
    mentioned_genres,
)

__all__ = [
    "EXPLAIN_SYSTEM",
    "EXPLAIN_EXAMPLE",
    "GENRE_WORDS",
    "explanation_messages",
    "clean_explanation",
    "judge_relevant",
    "judge_faithful",
    "judge_grounded",
    "derangement",
    "mentioned_genres",
    "mentioned_decades",
    "ExplanationTable",
    "EXPLAIN_CONFIG",
    "explanations_path",
    "best_tags",
    "explanation_pairs",
    "explain_model",
    "run_explain",
]


EXPLAIN_SYSTEM = ("You write very short movie recommendation reasons: one phrase of at most eight words, "
                  "using only the facts given.")
# One worked example (a few-shot turn): a 135M model copies its length and tone far better than
# it follows an instruction about them.
EXPLAIN_EXAMPLE = (
    "User interest: 80s action\nMovie: Die Hard (1988); genres: Action, Crime, Thriller",
    "Classic 80s action with a thrilling heist.",
)

def explanation_messages(tag: str, title: str, genres: Sequence[str], year) -> list[dict]:
    """The chat prompt of one explanation: a worked example, then the user's interest (a tag)
    and the item's facts (title with year, genres).

    Args:
        tag: the user's interest the explanation speaks to.
        title: the item's title, with its year.
        genres: the item's genres.
        year: the item's year (unused in the text: the title carries it).

    Returns:
        The chat messages (system, example pair, the question).
    """
    facts = f"{title}; genres: {', '.join(genres) if len(genres) else 'unknown'}"
    return [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {"role": "user", "content": EXPLAIN_EXAMPLE[0]},
        {"role": "assistant", "content": EXPLAIN_EXAMPLE[1]},
        {"role": "user", "content": f"User interest: {tag}\nMovie: {facts}"},
    ]


def clean_explanation(raw: str, max_words: int = 12) -> tuple[str, bool, str]:
    """(explanation, ok, reason): the first non-empty line, without quotes, list marks or a
    "Reason:" label, cut to ``max_words`` words. ``ok`` is False for an empty answer or one cut.

    Args:
        raw: the generated text.
        max_words: the most words kept.

    Returns:
        (explanation, ok, reason): the cleaned text, whether it is whole, and why not.
    """
    lines = [l.strip() for l in str(raw or "").splitlines() if l.strip()]
    if not lines:
        return "", False, "empty: no text"
    line = re.sub(r"^(?:[-*\d.)\s]+|(?:reason|answer|explanation)\s*:\s*)", "", lines[0], flags=re.I).strip()
    line = line.strip("\"'“”` ")
    words = line.split()
    if not words:
        return "", False, "empty: only punctuation"
    if len(words) > max_words:
        return " ".join(words[:max_words]), False, f"too_long: {len(words)} words, cut to {max_words}"
    return line, True, "ok"


def judge_relevant(tag: str, item_genres: Sequence[str], tag_category: Callable[[str], str | None]) -> bool:
    """Relevant: the interest's category is one of the item's genres.

    Args:
        tag: the interest the explanation speaks to.
        item_genres: the item's genres.
        tag_category: tag -> its category (or None).

    Returns:
        True when the tag's category is one of the item's genres.
    """
    cat = tag_category(tag)
    return cat is not None and cat in set(item_genres)


def _without_title(text_: str, title: str | None) -> str:
    """``text_`` with the item's own title (with and without its year) blanked out: a title's
    words are no claim about the film ("2001: A Space Odyssey" names no decade)."""
    text_ = str(text_)
    if title:
        for t in {str(title), re.sub(r"\s*\(\d{4}\)\s*$", "", str(title))}:
            text_ = re.sub(re.escape(t), " ", text_, flags=re.I)
    return text_


def judge_faithful(explanation: str, item_genres: Sequence[str], year, title: str | None = None) -> tuple[bool, list[str]]:
    """Faithful: the text names no genre the item lacks and no decade other than its own.

    The item's own title is removed first ("2001: A Space Odyssey" names no decade, "War of
    the Worlds" no genre). Returns (verdict, the violations, e.g. ["genre Horror", "decade 1980s"]).

    Args:
        explanation: the explanation text.
        item_genres: the item's genres.
        year: the item's year (None or NA: every decade named is a violation).
        title: the item's title, removed before reading.

    Returns:
        (verdict, violations).
    """
    explanation = _without_title(explanation, title)
    bad = [f"genre {g}" for g in sorted(mentioned_genres(explanation) - set(item_genres))]
    own = None if year is None or pd.isna(year) else int(year) // 10 * 10
    bad += [f"decade {d}s" for d in sorted(mentioned_decades(explanation)) if d != own]
    return not bad, bad


def judge_grounded(explanation: str, item_genres: Sequence[str], year, title: str | None = None) -> bool:
    """Grounded: faithful (:func:`judge_faithful`) *and* names at least one fact of its own
    item, a genre it has or its decade (the title removed first, as there). A generic "a
    great movie you will love" is faithful but not grounded. Unlike :func:`judge_relevant`,
    which checks the tag the retrieval picked, this reads only what the writer wrote.

    Args:
        explanation: the explanation text.
        item_genres: the item's genres.
        year: the item's year.
        title: the item's title, removed before reading.

    Returns:
        True when the text is faithful and names a fact of its item.
    """
    if not judge_faithful(explanation, item_genres, year, title)[0]:
        return False
    explanation = _without_title(explanation, title)
    own = None if year is None or pd.isna(year) else int(year) // 10 * 10
    return bool(mentioned_genres(explanation) & set(item_genres)) or own in mentioned_decades(explanation)


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (n >= 2): the shuffled
    control pairs every explanation with another row's item.

    Args:
        n: the number of rows (>= 2).
        seed: the permutation's seed.

    Returns:
        The permutation, an int array of length ``n``.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 rows, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def prompt_hash(messages: list[dict]) -> str:
    """The short hash of a chat prompt, kept with each generated row, so a test can tell a
    committed table from one the current prompt code would write.

    Args:
        messages: the chat messages.

    Returns:
        16 hex digits of the SHA-256 of the messages' canonical JSON.
    """
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class ExplanationTable:
    """The offline (tag, item) -> explanation lookup table, with its provenance.

    Saved as one JSON file (``meta`` + ``rows``); each row keeps the hash of the prompt it was
    generated from, so a test can check the table still matches the current prompt code.
    """

    rows: pd.DataFrame  # tag, item_id, explanation, raw, ok, reason, prompt_hash
    meta: dict

    COLUMNS = ("tag", "item_id", "explanation", "raw", "ok", "reason", "prompt_hash")

    @classmethod
    def generate(cls, generator, pairs: pd.DataFrame, movies: pd.DataFrame, meta: dict | None = None,
                 progress: bool = True) -> "ExplanationTable":
        """Explain every (tag, item_id) row of ``pairs`` with ``generator`` (a
        :class:`generation.Generator`, cached or not); malformed answers are kept and flagged."""
        m = movies.set_index("item_id")
        msgs = [explanation_messages(t, m.at[int(i), "title"], list(m.at[int(i), "genres"]), m.at[int(i), "year"])
                for t, i in zip(pairs["tag"], pairs["item_id"])]
        raws = generator.generate(msgs, progress=progress) if msgs else []
        rows = []
        for (t, i), msg, raw in zip(zip(pairs["tag"], pairs["item_id"]), msgs, raws):
            exp, ok, reason = clean_explanation(raw)
            rows.append({"tag": str(t), "item_id": int(i), "explanation": exp, "raw": raw, "ok": ok,
                         "reason": reason, "prompt_hash": prompt_hash(msg)})
        meta = dict(meta or {})
        meta.setdefault("generator", getattr(generator, "identity", type(generator).__name__))
        cfg = getattr(generator, "config", None)
        if cfg is not None:
            meta.setdefault("generation_config", cfg.cache_fields())
        return cls(pd.DataFrame(rows, columns=list(cls.COLUMNS)), meta)

    def lookup(self, tag: str, item_id: int) -> str | None:
        """The explanation of (tag, item), or None when the table has no such row."""
        hit = self.rows[(self.rows["tag"] == tag) & (self.rows["item_id"] == int(item_id))]
        return None if hit.empty else str(hit["explanation"].iloc[0])

    def judged(self, movies: pd.DataFrame, tag_category: Callable[[str], str | None],
               shuffle_seed: int = 0) -> pd.DataFrame:
        """The rows with the judges' verdicts: ``relevant`` (the retrieval's tag match),
        ``faithful`` and ``violations``, ``grounded`` (:func:`judge_grounded`), and
        ``grounded_shuffled``: the same explanation judged against another row's item
        (:func:`derangement`), the rate a judge gives text that is not about its item."""
        m = movies.set_index("item_id")
        out = self.rows.copy()
        rel, fai, why, gro = [], [], [], []

        def facts(i):
            return list(m.at[int(i), "genres"]), m.at[int(i), "year"], m.at[int(i), "title"]

        for t, i, e in zip(out["tag"], out["item_id"], out["explanation"]):
            g, y, title = facts(i)
            rel.append(judge_relevant(t, g, tag_category))
            ok, bad = judge_faithful(e, g, y, title)
            fai.append(ok)
            why.append("; ".join(bad))
            gro.append(judge_grounded(e, g, y, title))
        other = out["item_id"].to_numpy()[derangement(len(out), shuffle_seed)] if len(out) > 1 else out["item_id"]
        shuf = [judge_grounded(e, *facts(j)) for e, j in zip(out["explanation"], other)]
        return out.assign(relevant=rel, faithful=fai, violations=why, grounded=gro, grounded_shuffled=shuf)

    def stale_rows(self, movies: pd.DataFrame) -> pd.DataFrame:
        """Rows whose stored prompt hash differs from the prompt the current code writes."""
        m = movies.set_index("item_id")
        now = [prompt_hash(explanation_messages(t, m.at[int(i), "title"], list(m.at[int(i), "genres"]), m.at[int(i), "year"]))
               for t, i in zip(self.rows["tag"], self.rows["item_id"])]
        return self.rows[self.rows["prompt_hash"].to_numpy() != np.asarray(now)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON (``meta`` and ``rows``) to ``path``, making its folder; returns
        the path.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": self.meta, "rows": self.rows.to_dict(orient="records")}
        path.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=_json_default) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExplanationTable":
        """Read a table that :meth:`save` wrote; a missing file raises with the command that
        regenerates it.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no explanation table at {path}; regenerate it with "
                                    "`python -m llmrec_lib.recgpt.explanations explain` (see the chapter 08 artifact notes)")
        payload = json.loads(path.read_text())
        return cls(pd.DataFrame(payload["rows"], columns=list(cls.COLUMNS)), payload["meta"])


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


EXPLAIN_CONFIG = dict(max_new_tokens=20, temperature=0.0, batch_size=8, repetition_penalty=1.1)


def explanations_path() -> Path:
    """``artifacts/recgpt/explanations.json``: the committed (tag, item) -> explanation table.

    Returns:
        The file's path.
    """
    return config.artifacts_dir("recgpt") / "explanations.json"


def best_tags(model: ThreeTowerModel, tags: Sequence[str], item_cols: Sequence[int]) -> list[str | None]:
    """For each item column, the tag among ``tags`` whose ``h_t`` scores it highest (the
    interest an explanation should speak to); None when there are no tags.

    Args:
        model: the trained three-tower model.
        tags: the user's tags.
        item_cols: the catalogue columns of the items.

    Returns:
        One tag (or None) per item column.
    """
    if not len(tags):
        return [None] * len(item_cols)
    h_t = model.tag_vectors(list(tags))  # (n_tags, d)
    h_v = model.item_vectors()[np.asarray(item_cols, dtype=np.int64)]  # (n, d)
    return [list(tags)[j] for j in np.argmax(h_v @ h_t.T, axis=1)]


def explanation_pairs(model: ThreeTowerModel, split: data.Split, user_tags: Mapping[int, Sequence[str]],
                      n_users: int, k: int, b: float, seed: int = 0) -> pd.DataFrame:
    """(user_id, rank, item_id, tag) for ``n_users`` seeded test users: their top ``k`` fused
    items (seen items excluded, as in evaluation) and each item's best-matching tag.

    Args:
        model: the trained three-tower model.
        split: the split whose test users are drawn.
        user_tags: user_id -> the user's tags.
        n_users: how many test users to draw.
        k: items per user.
        b: the fusion weight of the tag tower.
        seed: the seed that draws the users.

    Returns:
        One row per (user, rank), with the item and its tag.
    """
    from llmrec_lib import evaluate as E

    users = np.sort(np.random.default_rng(seed).choice(split.users("test"), size=n_users, replace=False))
    ed = E.EvalData.from_split(split, "test", model.feats.item_ids).subset(users)
    system = model.system(split, "test", user_tags, b=b)
    top = E.evaluate(system, ed, ks=(k,)).topk  # (n_users, k) columns
    rows = []
    for u, cols in zip(ed.user_ids, top):
        for rank, (c, t) in enumerate(zip(cols, best_tags(model, list(user_tags.get(int(u), [])), cols)), 1):
            rows.append({"user_id": int(u), "rank": rank, "item_id": int(model.feats.item_ids[c]), "tag": t})
    return pd.DataFrame(rows)


def explain_model(model: ThreeTowerModel, split: data.Split, movies: pd.DataFrame,
                  user_tags: Mapping[int, Sequence[str]], n_users: int, k: int, b: float, *,
                  generator=None, tag_category: Callable[[str], str | None] | None = None,
                  meta: dict | None = None, progress: bool = True) -> ExplanationTable:
    """The explanation table of what ``model`` retrieves: the (tag, item) pairs of
    :func:`explanation_pairs` (``n_users`` seeded test users, top ``k`` fused items at ``b``,
    each with the user's best-matching tag from ``user_tags``; rows without a tag dropped,
    duplicates once), written by ``generator`` (default: SmolLM2-135M with
    :data:`EXPLAIN_CONFIG`, cached on disk), judged, with the judges' rates in
    ``meta["judges"]`` and the pair count in ``meta["n_pairs"]``. :func:`run_explain` runs it for
    the committed table; chapter 08 runs it live on data the committed table does not fit.

    Args:
        model: the trained three-tower model.
        split: the split whose test users are explained.
        movies: the catalogue (titles, genres, years of the prompts and judges).
        user_tags: user_id -> the user's tags.
        n_users: how many test users to draw.
        k: items per user.
        b: the fusion weight of the tag tower.
        generator: what writes the explanations (default: SmolLM2-135M, cached).
        tag_category: tag -> its category, for the relevance judge (default: recgpt's).
        meta: provenance to record in the table's meta.
        progress: show a progress bar.

    Returns:
        The judged :class:`ExplanationTable`.
    """
    from llmrec_lib import generation, recgpt

    pairs = explanation_pairs(model, split, user_tags, n_users, k, b=b)
    pairs = pairs.dropna(subset=["tag"]).drop_duplicates(["tag", "item_id"]).reset_index(drop=True)
    if generator is None:
        generator = generation.CachedGenerator(generation.LocalGenerator(
            "smollm2-135m", config=generation.GenerationConfig(**EXPLAIN_CONFIG)))
    meta = {"alpha": model.cfg.alpha, "b": float(b), "seed": model.cfg.seed, "tag_source": model.cfg.tag_source,
            **(meta or {}), "n_pairs": int(len(pairs))}
    table = ExplanationTable.generate(generator, pairs[["tag", "item_id"]], movies, progress=progress, meta=meta)
    judged = table.judged(movies, tag_category or recgpt.tag_category)
    table.meta["judges"] = {j: float(judged[c].mean()) for j, c in (
        ("relevant", "relevant"), ("faithful", "faithful"), ("grounded", "grounded"),
        ("grounded, shuffled items", "grounded_shuffled"), ("well_formed", "ok"))}
    return table


def run_explain(mode: str = "full", alpha: float = 0.5, b: float = 0.8, seed: int = 0, *,
                model: ThreeTowerModel | None = None, out: str | os.PathLike | None = None,
                progress: bool = True) -> ExplanationTable:
    """Explain what chapter 08's selected model retrieves (what ``python -m llmrec_lib.recgpt.explanations
    explain`` runs): the history-trained model of ``mode`` with ``alpha`` and ``seed`` (or
    ``model``, already trained), queried on test with chapter 07's LLM tags and fused with
    ``b``; the top ``explain_k`` items of ``explain_users`` seeded test users, each with the
    user's tag that the tag tower matches best; SmolLM2 writes, the judges score, the table is
    saved (default :func:`explanations_path`).

    Args:
        mode: the run mode whose model settings are used ("full", "quick").
        alpha: the model's a (tag-loss weight).
        b: the fusion weight.
        seed: the model's seed.
        model: an already trained model (skips training).
        out: where to save the table.
        progress: show progress bars.

    Returns:
        The saved :class:`ExplanationTable`.
    """
    import dataclasses

    from llmrec_lib import backbones, recgpt
    from llmrec_lib.recgpt import tagger

    t0 = time.perf_counter()
    settings = MODES[mode]
    ml = data.load_movielens(config.data_dir())
    split = data.per_user_split(ml.ratings)
    item_tags = recgpt.item_tags(ml.movies, text.training_tags(ml.tags, split.train))
    if model is None:
        cfg = dataclasses.replace(settings["config"], tag_source="history", alpha=float(alpha), seed=int(seed))
        lookup = item_tags.to_dict()  # the rule runs once per training pair: dict reads are fast
        model = build(ml, split, item_tags, backbones.load_backbone("minilm-l6"), cfg, recgpt.tag_category,
                      item_category=recgpt.item_category,
                      history_tagger=lambda items: recgpt.recent_tags(items, lookup, n=recgpt.N_TAGS))
        model.fit(split.train, progress=progress)
    cfg = model.cfg
    command = f"python -m llmrec_lib.recgpt.explanations explain --mode {mode} --alpha {cfg.alpha:g} --b {b:g} --seed {cfg.seed}"
    table = explain_model(
        model, split, ml.movies, tagger.served_tags("test"), settings["explain_users"], settings["explain_k"], b,
        progress=progress,
        meta={"command": command, "mode": mode, "alpha": cfg.alpha, "b": float(b), "seed": cfg.seed,
              "tag_source": cfg.tag_source,
              "pairs_from": f"top-{settings['explain_k']} fused (a={cfg.alpha:g}, b={b:g}) items of "
                            f"{settings['explain_users']} seeded test users, each with its best-matching "
                            f"LLM tag (chapter 07's served tagger, {tagger.SERVED})"})
    table.meta["seconds"] = round(time.perf_counter() - t0, 1)
    table.save(out or explanations_path())
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m llmrec_lib.recgpt.explanations explain [--mode M]
    [--alpha A] [--b B] [--seed S] [--out PATH]`` runs :func:`run_explain`.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status, 0.
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m llmrec_lib.recgpt.explanations", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("explain", help="generate the (tag, item) explanation table with SmolLM2")
    e.add_argument("--mode", default="full", choices=sorted(MODES))
    e.add_argument("--alpha", type=float, default=0.5, help="a of the selected model (chapter 08 prints it)")
    e.add_argument("--b", type=float, default=0.8, help="b of the selected model (chapter 08 prints it)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="default: artifacts/recgpt/explanations.json")
    args = p.parse_args(argv)
    table = run_explain(args.mode, args.alpha, args.b, args.seed, out=args.out)
    print(json.dumps(table.meta, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
