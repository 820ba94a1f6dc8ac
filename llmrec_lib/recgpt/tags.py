"""Item tags for RecGPT on MovieLens, and the predicted-tags file (chapters 07 and 08).

Taobao's items carry tags; MovieLens items do not, so :func:`item_tags` builds phrases from an
item's own metadata: a genre as the core word and a decade, another genre or a popular user
tag as the modifier ("90s comedy", "comic animation", "atmospheric crime film"). They describe
items in the same language the LLM is asked to write, so chapter 08's tag tower can learn from
them. :func:`load_predicted_tags` reads the tags chapter 07 predicts and chapter 08 uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import pandas as pd

from llmrec_lib import data
from llmrec_lib.recgpt.vocabulary import (
    GENRE_CORE,
    GENRE_MODIFIER,
    NON_CATEGORY_GENRES,
    TAG_CATEGORIES,
    decade_label,
    tag_categories,
)


def item_categories(genres: Iterable[str]) -> list[str]:
    """An item's genres that are categories, most specific first (the order of
    :data:`TAG_CATEGORIES`); unknown genre names raise.

    Args:
        genres: the item's MovieLens genre names.

    Returns:
        The genres that are categories, most specific first (empty for none).
    """
    genres = list(genres)
    unknown = [g for g in genres if g not in GENRE_CORE and g not in NON_CATEGORY_GENRES]
    if unknown:
        raise ValueError(f"unknown genre(s) {unknown}; known: {sorted(GENRE_CORE) + sorted(NON_CATEGORY_GENRES)}")
    return [c for c in TAG_CATEGORIES if c in genres]


def item_category(genres: Iterable[str]) -> str | None:
    """An item's one category for HR@K: its most specific genre (first in
    :data:`TAG_CATEGORIES`, i.e. rarest in the catalogue), None without genres. RecGPT's items
    each have one leaf category; a film listed as Animation|Children|Comedy is an animation
    first, and a tag "comedy" should not count as finding it.

    Args:
        genres: the item's MovieLens genre names.

    Returns:
        The most specific category, or None when no genre is one.
    """
    cats = item_categories(genres)
    return cats[0] if cats else None


_GENERIC_RE = re.compile(r"\b(?:film|films|movie|movies)\b")


def _tag_modifiers(tags: pd.DataFrame | None, min_users: int, max_words: int) -> dict[int, list[str]]:
    """item_id -> user tags usable as modifiers: used by >= ``min_users`` distinct users on that
    item, at most ``max_words`` words, naming no category (those are genres already), letters,
    digits, spaces and hyphens only, not saying "film" or "movie" (a modifier, not a noun);
    most used first, then alphabetical."""
    if tags is None or len(tags) == 0:
        return {}
    data.require_columns(tags, ("user_id", "item_id", "tag"), "tags",
                         "Pass ml.tags or text.training_tags(...).")
    t = tags[["user_id", "item_id"]].copy()
    t["tag"] = tags["tag"].astype(str).str.casefold().str.split().str.join(" ")
    t = t.drop_duplicates()
    n = t.groupby(["item_id", "tag"]).size().rename("n").reset_index()
    n = n[n["n"] >= min_users]
    ok = n["tag"].str.fullmatch(r"[a-z0-9][a-z0-9 \-]*") & (n["tag"].str.split().str.len() <= max_words)
    n = n[ok.fillna(False)]
    n = n[[not tag_categories(x) and not _GENERIC_RE.search(x) for x in n["tag"]]]
    n = n.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    return {int(i): list(g) for i, g in n.groupby("item_id")["tag"]}


def item_tags(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None = None,
    *,
    min_tag_users: int = 2,
    max_tag_words: int = 2,
    max_user_tags: int = 2,
    max_tags: int | None = None,
) -> pd.Series:
    """Each item as a list of "modifier + core word" tag phrases, from its own metadata.

    For an item with categories c1..cn (its genres, most specific first, see
    :func:`item_categories`; c1 is :func:`item_category`) and decade d, in this order:

    1. ``"{d} {core(c1)}"`` ("90s animation"), when the year is known;
    2. ``"{modifier(cj)} {core(c1)}"`` for each other genre cj: the commoner genre modifies
       the most specific one ("comic animation", "dramatic crime film", "action sci-fi");
    3. ``"{user tag} {core(c1)}"`` for up to ``max_user_tags`` user tags of the item
       (``tags``; see :func:`_tag_modifiers` for which qualify), the core word being the
       item's category ("atmospheric crime film", "quirky animation").

    Every phrase's :func:`tag_category` is the item's category c1: a tag says what kind of
    film the item is first of all, the other genres refine it. Items without
    categories get an empty list. Deterministic: the same frames give the same tags.

    Args:
        movies: item_id, genres (list of str) and year (nullable), as in ``ml.movies``.
        tags: user tags (user_id, item_id, tag), or None for metadata-only tags. Pass only
            what was written in training time (:func:`llmrec_lib.text.training_tags`): a tag written after a
            user's test window is information from the future.
        min_tag_users: a user tag qualifies when at least this many users gave it to the item.
        max_tag_words: longer user tags are sentences, not modifiers.
        max_user_tags: at most this many user-tag phrases per item.
        max_tags: keep the first ``max_tags`` phrases (None: all).

    Returns:
        A Series item_id -> list[str], named "tags", in the order of ``movies``.
    """
    data.require_columns(movies, ("item_id", "genres", "year"), "movies", "Pass ml.movies.")
    if max_tags is not None and max_tags < 1:
        raise ValueError(f"max_tags must be None or >= 1, got {max_tags}")
    if min_tag_users < 1 or max_tag_words < 1 or max_user_tags < 0:
        raise ValueError("need min_tag_users >= 1, max_tag_words >= 1 and max_user_tags >= 0")
    modifiers = _tag_modifiers(tags, min_tag_users, max_tag_words)
    out = []
    for item_id, genres, year in zip(movies["item_id"].tolist(), movies["genres"], movies["year"]):
        cats = item_categories(genres)
        phrases: list[str] = []
        if cats:
            d = decade_label(year)
            if d is not None:
                phrases.append(f"{d} {GENRE_CORE[cats[0]]}")
            phrases += [f"{GENRE_MODIFIER[b]} {GENRE_CORE[cats[0]]}" for b in cats[1:]]
            phrases += [f"{m} {GENRE_CORE[cats[0]]}" for m in modifiers.get(int(item_id), [])[:max_user_tags]]
        seen: set[str] = set()
        uniq = [p for p in phrases if not (p in seen or seen.add(p))]
        out.append(uniq[:max_tags] if max_tags is not None else uniq)
    return pd.Series(out, index=pd.Index(movies["item_id"].to_numpy(), name="item_id"), name="tags")


# --------------------------------------------------------------------------------------------
# Predicted tags (the artifact chapter 07 writes and chapter 08 reads)
# --------------------------------------------------------------------------------------------


def artifacts_dir() -> Path:
    """``artifacts/recgpt`` in the project (committed generations, adapters and tags).

    Returns:
        The folder's path (from :func:`config.artifacts_dir`).
    """
    from llmrec_lib import config

    return config.artifacts_dir("recgpt")


def predicted_tags_path() -> Path:
    """The committed predicted tags of the test users, ``artifacts/recgpt/tags_test.jsonl``
    (chapter 07 writes it, chapter 08 reads it).

    Returns:
        The file's path.
    """
    return artifacts_dir() / "tags_test.jsonl"


def load_predicted_tags(path=None, source: str | None = "fine-tuned") -> dict[int, list[str]]:
    """user_id -> predicted tags, from a JSONL file of ``{"user_id", "tags", "source"}`` lines
    (default: the committed ``artifacts/recgpt/tags_test.jsonl`` that chapter 07 writes).

    ``source`` picks one producer ("zero-shot", "fine-tuned", ...); None requires the file to
    hold a single source. A user listed twice for one source is an error, not a silent merge.

    Args:
        path: the JSONL file (default :func:`predicted_tags_path`).
        source: the producer to keep; None when the file holds one only.

    Returns:
        user_id -> the tags in the order they were predicted.
    """
    import json

    path = Path(path) if path is not None else predicted_tags_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. It is written by chapter 07 (tag prediction); run that chapter, "
            "or the command in artifacts/recgpt/README.md, first.")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            uid, tags, src = int(obj["user_id"]), obj["tags"], str(obj.get("source", ""))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n} is not a {{user_id, tags, source}} JSON object ({exc})") from exc
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"{path}:{n}: tags must be a list of strings")
        rows.append((uid, tags, src))
    sources = sorted({s for _, _, s in rows})
    if source is None:
        if len(sources) > 1:
            raise ValueError(f"{path} holds several sources {sources}; pass source=one of them")
    elif source not in sources:
        raise ValueError(f"{path} has no tags from source {source!r}; it has {sources}")
    out: dict[int, list[str]] = {}
    for uid, tags, src in rows:
        if source is not None and src != source:
            continue
        if uid in out:
            raise ValueError(f"{path}: user {uid} appears twice for source {src!r}")
        out[uid] = tags
    return out
