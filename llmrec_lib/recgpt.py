"""Alibaba's RecGPT (arXiv 2507.22879) at pocket scale: tags, categories, interests.

RecGPT puts LLMs in front of a retrieval model: ``LLM_UI`` mines a user's interests from
their (compressed) lifelong history, ``LLM_IT`` turns interests into *tags*, short
"modifier + core word" phrases that describe items the user may want next ("outdoor
waterproof hiking boots"), and a three-tower model retrieves items for those tags. The paper
measures tag prediction with HR@30: a tag-to-category model maps the 30 predicted tags to
categories, and a user is a hit when the category of the true next item is among them.

On MovieLens this module stands in for what Taobao has and we do not:

* **Item tags** (:func:`item_tags`): phrases built from an item's own metadata, a genre as
  the core word and a decade, another genre or a popular user tag as the modifier ("90s
  comedy", "animated comedy", "atmospheric drama"). They describe items in the same language
  the LLM is asked to write, so chapter 08's tag tower can learn from them.
* **Categories** (:data:`TAG_CATEGORIES`, :func:`tag_category`): the MovieLens genres (IMAX
  left out: it is a screen format, not a kind of film, and never an item's only genre). The
  tag-to-category "model" is a transparent keyword map: the *last* genre word of a phrase is
  its head noun in English ("animated comedy" is a comedy, "comedy drama" a drama).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# Categories and the tag-to-category map
# --------------------------------------------------------------------------------------------

#: The categories of HR@K: MovieLens genres, most specific (rarest in the catalogue) first.
#: This order also decides which genre is the modifier and which the core word of a pair tag:
#: the rarer genre modifies the commoner one ("animated comedy", "crime drama").
TAG_CATEGORIES: tuple[str, ...] = (
    "Film-Noir", "Western", "Musical", "War", "Documentary", "Mystery", "Animation", "Children",
    "Fantasy", "Horror", "Sci-Fi", "Crime", "Adventure", "Romance", "Action", "Thriller",
    "Comedy", "Drama",
)
#: What :func:`tag_category` returns for a phrase that names no category.
UNMAPPED = "(unmapped)"
#: Genres that are not categories (a screen format).
NON_CATEGORY_GENRES = frozenset({"IMAX"})

#: A genre as the core word (head noun) of a tag.
GENRE_CORE: dict[str, str] = {
    "Action": "action", "Adventure": "adventure", "Animation": "animation",
    "Children": "family film", "Comedy": "comedy", "Crime": "crime film",
    "Documentary": "documentary", "Drama": "drama", "Fantasy": "fantasy",
    "Film-Noir": "film noir", "Horror": "horror", "Musical": "musical",
    "Mystery": "mystery", "Romance": "romance", "Sci-Fi": "sci-fi",
    "Thriller": "thriller", "War": "war film", "Western": "western",
}
#: A genre as the modifier of another genre's core word.
GENRE_MODIFIER: dict[str, str] = {
    "Action": "action", "Adventure": "adventure", "Animation": "animated",
    "Children": "family", "Comedy": "comic", "Crime": "crime", "Documentary": "documentary",
    "Drama": "dramatic", "Fantasy": "fantasy", "Film-Noir": "noir", "Horror": "horror",
    "Musical": "musical", "Mystery": "mystery", "Romance": "romantic", "Sci-Fi": "sci-fi",
    "Thriller": "suspense", "War": "war", "Western": "western",
}

# Words (and short phrases) that name each category; matched on word boundaries, an optional
# plural "s"/"es" allowed. Longer phrases win at the same position ("star wars" is Sci-Fi,
# not War; "film noir" is Film-Noir, not a plain film).
CATEGORY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Action": ("action", "comic book", "martial arts", "kung fu", "superhero", "shootout", "explosion", "car chase"),
    "Adventure": ("adventure", "quest", "expedition", "treasure hunt", "swashbuckler"),
    "Animation": ("animation", "animated", "cartoon", "anime", "pixar", "stop motion", "stop-motion"),
    "Children": ("children", "kids", "kid", "family", "family film", "childrens", "children's"),
    "Comedy": ("comedy", "comedies", "comic", "comedic", "funny", "humor", "humour", "humorous",
               "satire", "satirical", "parody", "spoof", "slapstick", "sitcom", "rom-com", "romcom"),
    "Crime": ("crime", "crime film", "gangster", "mafia", "mob", "heist", "detective story", "criminal",
              "cop", "police"),
    "Documentary": ("documentary", "documentaries", "docuseries", "true story documentary"),
    "Drama": ("drama", "dramas", "dramatic", "melodrama", "tearjerker", "biopic", "coming-of-age",
              "coming of age"),
    "Fantasy": ("fantasy", "fairy tale", "fairytale", "magic", "magical", "wizard", "dragon", "myth",
                "mythology", "sword and sorcery"),
    "Film-Noir": ("film noir", "film-noir", "noir", "neo-noir"),
    "Horror": ("horror", "scary", "slasher", "zombie", "vampire", "haunted", "ghost story", "gore",
               "creepy", "monster movie"),
    "Musical": ("musical", "musicals", "song and dance", "broadway"),
    "Mystery": ("mystery", "mysteries", "whodunit", "detective", "puzzle", "enigma"),
    "Romance": ("romance", "romantic", "love story", "love", "relationship", "romances"),
    "Sci-Fi": ("sci-fi", "scifi", "sci fi", "science fiction", "science-fiction", "space", "alien",
               "aliens", "robot", "robots", "dystopia", "dystopian", "cyberpunk", "time travel",
               "futuristic", "star wars", "star trek", "space opera"),
    "Thriller": ("thriller", "suspense", "suspenseful", "thrilling", "psychological thriller",
                 "conspiracy", "espionage", "spy", "twist ending"),
    "War": ("war", "war film", "wartime", "wwii", "ww2", "world war", "world war ii", "military",
            "battle", "combat", "vietnam war"),
    "Western": ("western", "westerns", "cowboy", "cowboys", "wild west", "spaghetti western", "frontier"),
}


def _keyword_table() -> tuple[re.Pattern, dict[str, str]]:
    owner: dict[str, str] = {}
    for cat, words in CATEGORY_KEYWORDS.items():
        for w in words:
            if w in owner and owner[w] != cat:  # a guard for whoever edits the table
                raise ValueError(f"keyword {w!r} is listed under {owner[w]} and {cat}")
            owner[w] = cat
    # Longest first, so the alternation prefers "star wars" over "war" at the same position.
    alts = sorted(owner, key=lambda w: (-len(w), w))
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in alts) + r")(?:e?s)?(?![\w-])")
    return pattern, owner


_KEYWORDS_RE, _KEYWORD_OWNER = _keyword_table()


def tag_categories(tag: str) -> list[str]:
    """Every category a phrase mentions, in order of appearance (repeats removed)."""
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a string, got {type(tag).__name__}")
    out: list[str] = []
    for m in _KEYWORDS_RE.finditer(tag.casefold()):
        cat = _KEYWORD_OWNER[m.group(1)]
        if cat not in out:
            out.append(cat)
    return out


def tag_category(tag: str) -> str:
    """The category (a MovieLens genre in :data:`TAG_CATEGORIES`) of a tag phrase, or
    :data:`UNMAPPED` when it names none.

    The head noun decides: the *last* category word in the phrase ("animated comedy" ->
    Comedy, "sci-fi thriller" -> Thriller, "90s war film" -> War). Case-insensitive, plural
    tolerant ("westerns"). This keyword map is the book's stand-in for RecGPT's learned
    tag-to-category model: transparent, deterministic, and it never sees the user.
    """
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a string, got {type(tag).__name__}")
    last = None
    for m in _KEYWORDS_RE.finditer(tag.casefold()):
        last = m
    return _KEYWORD_OWNER[last.group(1)] if last is not None else UNMAPPED


# --------------------------------------------------------------------------------------------
# Item tags
# --------------------------------------------------------------------------------------------


def decade_label(year) -> str | None:
    """1995 -> "90s", 2003 -> "2000s", 1915 -> "1910s"; None/NA -> None.

    Two-digit labels only for 1920-1999, where they are unambiguous on this catalogue."""
    if year is None or pd.isna(year):
        return None
    decade = int(year) // 10 * 10
    return f"{decade % 100:02d}s" if 1920 <= decade < 2000 else f"{decade}s"


def item_categories(genres: Iterable[str]) -> list[str]:
    """An item's genres that are categories, most specific first (the order of
    :data:`TAG_CATEGORIES`); unknown genre names raise."""
    genres = list(genres)
    unknown = [g for g in genres if g not in GENRE_CORE and g not in NON_CATEGORY_GENRES]
    if unknown:
        raise ValueError(f"unknown genre(s) {unknown}; known: {sorted(GENRE_CORE) + sorted(NON_CATEGORY_GENRES)}")
    return [c for c in TAG_CATEGORIES if c in genres]


def training_tags(tags: pd.DataFrame, train_ratings: pd.DataFrame) -> pd.DataFrame:
    """The user tags a model trained on ``train_ratings`` may know: each tag written no later
    than its author's last training rating (authors with no training rating lose all tags).

    Per-user splits have no single cut-off date, so "before the test window" means before
    *the tagging user's* window; what other users tag later is the future for everyone.
    To be strict across users as well, pass ``tags[tags.timestamp <= cutoff]`` instead.
    """
    need = {"user_id", "item_id", "tag", "timestamp"}
    if need - set(getattr(tags, "columns", ())):
        raise ValueError(f"tags must have columns {sorted(need)} (ml.tags)")
    if {"user_id", "timestamp"} - set(getattr(train_ratings, "columns", ())):
        raise ValueError("train_ratings must have user_id and timestamp columns (split.train)")
    last = train_ratings.groupby("user_id")["timestamp"].max()
    limit = tags["user_id"].map(last)
    return tags[limit.notna() & (tags["timestamp"] <= limit)].reset_index(drop=True)


def _tag_modifiers(tags: pd.DataFrame | None, min_users: int, max_words: int) -> dict[int, list[str]]:
    """item_id -> user tags usable as modifiers: used by >= ``min_users`` distinct users on that
    item, at most ``max_words`` words, naming no category (those are genres already), letters,
    digits, spaces and hyphens only; most used first, then alphabetical."""
    if tags is None or len(tags) == 0:
        return {}
    need = {"user_id", "item_id", "tag"}
    if need - set(tags.columns):
        raise ValueError(f"tags must have columns {sorted(need)}; pass ml.tags or training_tags(...)")
    t = tags[["user_id", "item_id"]].copy()
    t["tag"] = tags["tag"].astype(str).str.casefold().str.split().str.join(" ")
    t = t.drop_duplicates()
    n = t.groupby(["item_id", "tag"]).size().rename("n").reset_index()
    n = n[n["n"] >= min_users]
    ok = n["tag"].str.fullmatch(r"[a-z0-9][a-z0-9 \-]*") & (n["tag"].str.split().str.len() <= max_words)
    n = n[ok.fillna(False)]
    n = n[[not tag_categories(x) for x in n["tag"]]]
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
    :func:`item_categories`) and decade d, in this order:

    1. ``"{d} {core(ci)}"`` for each category ("90s comedy"), when the year is known;
    2. ``"{modifier(ci)} {core(cj)}"`` for each pair i < j: the rarer genre modifies the
       commoner one ("animated comedy", "crime drama", "romantic comedy");
    3. ``"{user tag} {core(cn)}"`` for up to ``max_user_tags`` user tags of the item
       (``tags``; see :func:`_tag_modifiers` for which qualify), the core word being the
       item's commonest genre ("atmospheric drama", "pixar comedy").

    Every phrase's :func:`tag_category` is one of the item's own categories. Items without
    categories get an empty list. Deterministic: the same frames give the same tags.

    Args:
        movies: item_id, genres (list of str) and year (nullable), as in ``ml.movies``.
        tags: user tags (user_id, item_id, tag), or None for metadata-only tags. Pass only
            what was written in training time (:func:`training_tags`): a tag written after a
            user's test window is information from the future.
        min_tag_users: a user tag qualifies when at least this many users gave it to the item.
        max_tag_words: longer user tags are sentences, not modifiers.
        max_user_tags: at most this many user-tag phrases per item.
        max_tags: keep the first ``max_tags`` phrases (None: all).

    Returns a Series item_id -> list[str], named "tags", in the order of ``movies``.
    """
    missing = {"item_id", "genres", "year"} - set(getattr(movies, "columns", ()))
    if missing:
        raise ValueError(f"movies must have columns item_id, genres, year (ml.movies); missing {sorted(missing)}")
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
                phrases += [f"{d} {GENRE_CORE[c]}" for c in cats]
            phrases += [f"{GENRE_MODIFIER[a]} {GENRE_CORE[b]}"
                        for i, a in enumerate(cats) for b in cats[i + 1:]]
            phrases += [f"{m} {GENRE_CORE[cats[-1]]}" for m in modifiers.get(int(item_id), [])[:max_user_tags]]
        seen: set[str] = set()
        uniq = [p for p in phrases if not (p in seen or seen.add(p))]
        out.append(uniq[:max_tags] if max_tags is not None else uniq)
    return pd.Series(out, index=pd.Index(movies["item_id"].to_numpy(), name="item_id"), name="tags")


# --------------------------------------------------------------------------------------------
# Predicted tags (the artifact chapter 07 writes and chapter 08 reads)
# --------------------------------------------------------------------------------------------


def artifacts_dir() -> Path:
    """``artifacts/recgpt`` in the project (committed generations, adapters and tags)."""
    from llmrec_lib import config

    return config.PROJECT_ROOT / "artifacts" / "recgpt"


def predicted_tags_path() -> Path:
    return artifacts_dir() / "tags_test.jsonl"


def load_predicted_tags(path=None, source: str | None = "fine-tuned") -> dict[int, list[str]]:
    """user_id -> predicted tags, from a JSONL file of ``{"user_id", "tags", "source"}`` lines
    (default: the committed ``artifacts/recgpt/tags_test.jsonl`` that chapter 07 writes).

    ``source`` picks one producer ("zero-shot", "fine-tuned", ...); None requires the file to
    hold a single source. A user listed twice for one source is an error, not a silent merge.
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
