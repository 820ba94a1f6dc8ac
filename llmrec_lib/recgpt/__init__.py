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
  comedy", "comic animation", "atmospheric crime film"). They describe items in the same language
  the LLM is asked to write, so chapter 08's tag tower can learn from them.
* **Categories** (:data:`TAG_CATEGORIES`, :func:`tag_category`): the MovieLens genres (IMAX
  left out: it is a screen format, not a kind of film, and never an item's only genre). The
  tag-to-category "model" is a transparent keyword map: the *last* genre word of a phrase is
  its head noun in English ("animated comedy" is a comedy, "comedy drama" a drama).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data

# --------------------------------------------------------------------------------------------
# Categories and the tag-to-category map
# --------------------------------------------------------------------------------------------

#: The categories of HR@K: MovieLens genres, most specific (rarest in the catalogue) first.
#: This order decides an item's one category (:func:`item_category`: its most specific genre)
#: and so the core word of a pair tag: the commoner genre modifies the rarer one ("comic
#: animation", "dramatic war film"), so that a tag's head is the item's category.
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


def item_category(genres: Iterable[str]) -> str | None:
    """An item's one category for HR@K: its most specific genre (first in
    :data:`TAG_CATEGORIES`, i.e. rarest in the catalogue), None without genres. RecGPT's items
    each have one leaf category; a film listed as Animation|Children|Comedy is an animation
    first, and a tag "comedy" should not count as finding it."""
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

    Returns a Series item_id -> list[str], named "tags", in the order of ``movies``.
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
    """``artifacts/recgpt`` in the project (committed generations, adapters and tags)."""
    from llmrec_lib import config

    return config.artifacts_dir("recgpt")


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


# --------------------------------------------------------------------------------------------
# Behaviour compression (RecGPT section 3: item-level and sequence-level)
# --------------------------------------------------------------------------------------------

#: RecGPT keeps "reliable" behaviours (purchase, cart, favourite...) and drops plain clicks.
#: The book's analogue: a rating of 4 or more is "liked", 2 or less "disliked", and the
#: lukewarm middle (2.5-3.5), the closest thing MovieLens has to a click without commitment,
#: is dropped.
LIKED_MIN = data.POSITIVE_MIN  # the book's one pair of thresholds (data.py), under RecGPT's
DISLIKED_MAX = data.NEGATIVE_MAX  # words: a like is a positive, a dislike a negative


def reliable_behaviours(ratings: pd.DataFrame, liked_min: float = LIKED_MIN,
                        disliked_max: float = DISLIKED_MAX) -> pd.DataFrame:
    """The ratings that say something clear: liked (>= ``liked_min``) or disliked
    (<= ``disliked_max``), with a ``liked`` bool column; the lukewarm middle is dropped."""
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    if disliked_max >= liked_min:
        raise ValueError(f"disliked_max ({disliked_max}) must be below liked_min ({liked_min})")
    keep = (ratings["rating"] >= liked_min) | (ratings["rating"] <= disliked_max)
    out = ratings[keep].copy()
    out["liked"] = out["rating"] >= liked_min
    return out.reset_index(drop=True)


def raw_item_texts(movies: pd.DataFrame, tags: pd.DataFrame | None = None, k_tags: int = 5) -> pd.Series:
    """The uncompressed description of each item: full title, every genre and up to
    ``k_tags`` user tags, as plain sentences (``text.item_texts`` without markers). This is
    the "long item title" that item-level compression shortens."""
    from llmrec_lib import text

    fields = ("title", "genres") + (("tags",) if tags is not None and len(tags) else ())
    top = text.top_tags(tags, k=k_tags) if "tags" in fields else None
    return text.item_texts(movies, fields=fields, tags=top, markers=False)


_ALT_TITLE = re.compile(r"\s*\([^)]*\)\s*$")


def short_item_texts(movies: pd.DataFrame, max_words: int = 8, max_genres: int = 2) -> pd.Series:
    """Item-level compression: a short canonical text per item, ``name 'yy (g1/g2)``.

    The name loses alternate titles in parentheses ("City of Lost Children, The (Cité des
    enfants perdus, La)" -> "The City of Lost Children") and is cut to ``max_words`` words;
    the year becomes two digits; only the ``max_genres`` most specific genres stay, as their
    core words. RecGPT shortens keyword-stuffed Taobao titles with an LLM; MovieLens titles
    are already short, so here the genre list is where the tokens are saved.
    """
    data.require_columns(movies, ("item_id", "name", "year", "genres"), "movies")
    out = []
    for name, year, genres in zip(movies["name"].astype(str), movies["year"], movies["genres"]):
        short = name
        while _ALT_TITLE.search(short) and _ALT_TITLE.sub("", short).strip():
            short = _ALT_TITLE.sub("", short)
        words = short.split()
        short = " ".join(words[:max_words]) + ("..." if len(words) > max_words else "")
        short = data.parse_title(short)[0]  # "City of Lost Children, The" -> "The City of..."
        if year is not None and not pd.isna(year):
            short += f" '{int(year) % 100:02d}"
        cats = item_categories(genres)[:max_genres]
        if cats:
            short += " (" + "/".join(GENRE_CORE[c] for c in cats) + ")"
        out.append(short)
    return pd.Series(out, index=pd.Index(movies["item_id"].to_numpy(), name="item_id"), name="short_text")


def _fmt_rating(r: float) -> str:
    return f"{float(r):g}"


def raw_history_texts(ratings: pd.DataFrame, item_text: pd.Series, users=None) -> pd.Series:
    """Each user's history uncompressed: one line per rating, oldest first,
    ``2016-05-01 14:03 rated 4.5: <item text>``. user_id -> text."""
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    r = ratings if users is None else ratings[ratings["user_id"].isin(list(users))]
    r = r.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    when = pd.to_datetime(r["timestamp"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    lines = when + " rated " + r["rating"].map(_fmt_rating) + ": " + r["item_id"].map(item_text).astype(str)
    return lines.groupby(r["user_id"]).agg("\n".join).rename("text")


def time_buckets(timestamps, now: int, day_window: int = 30, month_window: int = 365) -> np.ndarray:
    """Sequence-level buckets, relative to ``now`` (the end of the visible history): a day
    ("2018-09-14") for the last ``day_window`` days, a month ("2018-07") for the last
    ``month_window`` days, a year ("2015") before that. Recent behaviour stays precise,
    old behaviour is summarised, as RecGPT does for lifelong histories."""
    ts = np.asarray(timestamps, dtype=np.int64)
    age_days = (int(now) - ts) / 86400.0
    dt = pd.to_datetime(ts, unit="s")
    day, month, year = dt.strftime("%Y-%m-%d"), dt.strftime("%Y-%m"), dt.strftime("%Y")
    return np.where(age_days <= day_window, day, np.where(age_days <= month_window, month, year))


def compressed_history_lines(user_ratings: pd.DataFrame, item_text: pd.Series, *,
                             now: int | None = None, day_window: int = 30,
                             month_window: int = 365) -> list[str]:
    """Sequence-level compression of one user's (reliable) ratings, oldest bucket first.

    One line per time bucket (:func:`time_buckets`): ``2015 liked: A; B. disliked: C`` with
    items aggregated per bucket (an item rated several times in a bucket is listed once,
    ``x2``; each rating keeps its own line in the raw form). ``liked`` comes from
    :func:`reliable_behaviours`; a frame without it counts ratings >= :data:`LIKED_MIN` as liked.
    """
    if len(user_ratings) == 0:
        return []
    r = user_ratings.sort_values(["timestamp", "item_id"], kind="stable")
    liked = r["liked"].to_numpy() if "liked" in r.columns else (r["rating"] >= LIKED_MIN).to_numpy()
    ts = r["timestamp"].to_numpy()
    now = int(ts.max()) if now is None else int(now)
    return _bucket_lines(r["item_id"].to_numpy(), time_buckets(ts, now, day_window, month_window),
                         liked, item_text)


def _bucket_lines(items: np.ndarray, buckets: np.ndarray, liked: np.ndarray, item_text) -> list[str]:
    lines = []
    for b in dict.fromkeys(buckets.tolist()):  # buckets in time order
        sel = buckets == b
        parts = []
        for flag, word in ((True, "liked"), (False, "disliked")):
            ids = items[sel & (liked == flag)].tolist()
            if ids:
                counts: dict = {}
                for i in ids:  # first-seen order, counted
                    counts[i] = counts.get(i, 0) + 1
                parts.append(f"{word}: " + "; ".join(str(item_text[i]) + (f" x{c}" if c > 1 else "")
                                                      for i, c in counts.items()))
        lines.append(f"{b} " + ". ".join(parts))
    return lines


def compressed_history_texts(ratings: pd.DataFrame, item_text: pd.Series, users=None, **kw) -> pd.Series:
    """:func:`compressed_history_lines` for every user, joined by newlines. user_id -> text."""
    data.require_columns(ratings, data.RATING_COLUMNS, "ratings")
    r = ratings if users is None else ratings[ratings["user_id"].isin(list(users))]
    out = {int(u): "\n".join(compressed_history_lines(g, item_text, **kw)) for u, g in r.groupby("user_id")}
    return pd.Series(out, name="text").rename_axis("user_id")


def history_prompt_text(user_ratings: pd.DataFrame, item_text: pd.Series, tokenizer, budget: int, *,
                        item_len: pd.Series | None = None, return_items: bool = False, **kw):
    """One user's compressed history (:func:`compressed_history_lines`) within ``budget``
    tokens: the newest ratings that fit, oldest dropped first, never half an item; buckets
    stay relative to the newest rating. Empty when not even one item fits.

    ``item_len`` (token count of each item text, e.g. ``text.count_tokens`` over
    ``item_text``) makes it fast: lengths are summed to find the cut, then the result is
    measured once and trimmed further if the estimate was short. ``return_items`` also
    returns the item ids shown (oldest first).
    """
    from llmrec_lib import text

    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    r = user_ratings.sort_values(["timestamp", "item_id"], kind="stable")
    if len(r) == 0:
        return ("", []) if return_items else ""
    items = r["item_id"].to_numpy()
    ts = r["timestamp"].to_numpy()
    liked = r["liked"].to_numpy() if "liked" in r.columns else (r["rating"] >= LIKED_MIN).to_numpy()
    buckets = time_buckets(ts, int(kw.pop("now", ts.max())), **kw)

    def render(k: int) -> str:
        s = slice(len(items) - k, len(items))
        return "\n".join(_bucket_lines(items[s], buckets[s], liked[s], item_text))

    def n_tokens(k: int) -> int:
        return int(text.count_tokens(tokenizer, [render(k)], add_special_tokens=False)[0])

    if item_len is not None:  # estimate: item + separator, plus a header per bucket
        per = item_len.reindex(items).fillna(8).to_numpy() + 2
        new_bucket = np.r_[True, buckets[1:] != buckets[:-1]][::-1]  # newest first
        est = np.cumsum(per[::-1] + np.where(new_bucket, 10, 0))
        k = int(np.searchsorted(est, budget, side="right"))
        while k > 0 and n_tokens(k) > budget:
            k -= 1
    elif n_tokens(len(items)) <= budget:
        k = len(items)
    else:
        lo, hi = 0, len(items)  # fits(lo) (or lo == 0), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if n_tokens(mid) <= budget else (lo, mid)
        k = lo
    out = render(k) if k else ""
    return (out, items[len(items) - k:].tolist()) if return_items else out


def compression_stats(ratings: pd.DataFrame, movies: pd.DataFrame, tokenizer, *,
                      tags: pd.DataFrame | None = None, users=None,
                      budgets: Sequence[int] = (2048, 4096, 8192)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Token counts of every user's whole history at each compression stage, measured with
    ``tokenizer``:

    ``raw`` (every rating, one line each, long item text), ``reliable`` (lukewarm ratings
    dropped), ``item-level`` (plus short item text), ``sequence-level`` (plus time buckets,
    items aggregated per bucket). Returns (per-user token table, fit table: share of users
    whose whole history fits each budget at each stage)."""
    from llmrec_lib import text

    raw_text = raw_item_texts(movies, tags)
    short = short_item_texts(movies)
    rel = reliable_behaviours(ratings)
    if users is None:
        users = np.sort(ratings["user_id"].unique())
    users = np.asarray(list(users))
    stages = {
        "raw": raw_history_texts(ratings, raw_text, users),
        "reliable": raw_history_texts(rel, raw_text, users),
        "item-level": raw_history_texts(rel, short, users),
        "sequence-level": compressed_history_texts(rel, short, users),
    }
    table = pd.DataFrame(index=pd.Index(users, name="user_id"))
    for name, s in stages.items():
        s = s.reindex(users).fillna("")
        table[name] = text.count_tokens(tokenizer, s.tolist(), add_special_tokens=False)
    fit = pd.DataFrame({b: (table <= b).mean() for b in budgets}).T
    fit.index.name = "budget"
    return table, fit


# --------------------------------------------------------------------------------------------
# The teacher: a transparent miner standing in for RecGPT's large reasoning model
# --------------------------------------------------------------------------------------------


def phrase_base_rates(positives: pd.DataFrame, itags: pd.Series) -> pd.Series:
    """Share of the positive ratings in ``positives`` whose item carries each tag phrase
    (pass training positives only). The teacher's "what everybody likes" reference."""
    data.require_columns(positives, ("item_id",), "positives")
    counts: dict[str, int] = {}
    per_item = positives["item_id"].value_counts()
    for item_id, n in per_item.items():
        for p in itags.get(item_id, ()):
            counts[p] = counts.get(p, 0) + int(n)
    return (pd.Series(counts, dtype=np.float64) / max(len(positives), 1)).rename("base_rate").sort_index()


def _diverse(ranked: Iterable[str], n: int, max_per_category: int) -> list[str]:
    """The first ``n`` phrases of ``ranked``, at most ``max_per_category`` per head category
    (unmapped phrases count as one category of their own), repeats skipped."""
    out: list[str] = []
    per_cat: dict[str, int] = {}
    for p in ranked:
        if p in out:
            continue
        c = tag_category(p)
        if per_cat.get(c, 0) >= max_per_category:
            continue
        per_cat[c] = per_cat.get(c, 0) + 1
        out.append(p)
        if len(out) == n:
            break
    return out


def teacher_interests(items: Sequence[int], itags: pd.Series, base_rate: pd.Series, *, n: int = 5,
                      min_support: int = 3, max_per_category: int = 2) -> list[str]:
    """RecGPT's LLM_UI teacher, replaced by counting: the user's interests are the tag
    phrases their liked items carry *more often than everybody's do*.

    For each phrase p on the user's liked ``items`` (ids; each item counted once):
    ``score(p) = count(p) - len(items) * base_rate(p)``, the excess over what an average user
    with as many likes would show. Phrases with ``count >= min_support`` are ranked by score
    (then count, then alphabetically) and picked greedily with at most ``max_per_category``
    per category (the paper balances its tag data the same way); if fewer than ``n`` qualify
    the rest are filled by count alone. Deterministic; every interest is grounded in at least
    one liked item by construction.
    """
    items = list(dict.fromkeys(int(i) for i in items))
    counts: dict[str, int] = {}
    for i in items:
        for p in itags.get(i, ()):
            counts[p] = counts.get(p, 0) + 1
    if not counts:
        return []
    rows = [(p, c, c - len(items) * float(base_rate.get(p, 0.0))) for p, c in counts.items()]
    strong = sorted([r for r in rows if r[1] >= min_support], key=lambda r: (-r[2], -r[1], r[0]))
    picked = _diverse([r[0] for r in strong], n, max_per_category)
    if len(picked) < n:
        rest = sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))
        picked = _diverse(picked + [r[0] for r in rest], n, max_per_category)
    return picked


def target_tags(next_items: Sequence[int], history_items: Sequence[int], itags: pd.Series, *,
                n: int = 6, max_per_category: int = 2) -> list[str]:
    """LLM_IT's training target: tags of the items the user *actually liked next* (RecGPT
    trains on the titles of clicked items). Phrases of ``next_items`` ranked by how many of
    them carry it, then by how often the earlier ``history_items`` did (the phrase fits the
    user), then alphabetically; at most ``max_per_category`` per category."""
    nxt: dict[str, int] = {}
    for i in dict.fromkeys(int(x) for x in next_items):
        for p in itags.get(i, ()):
            nxt[p] = nxt.get(p, 0) + 1
    hist: dict[str, int] = {}
    for i in dict.fromkeys(int(x) for x in history_items):
        for p in itags.get(i, ()):
            hist[p] = hist.get(p, 0) + 1
    ranked = sorted(nxt, key=lambda p: (-nxt[p], -hist.get(p, 0), p))
    return _diverse(ranked, n, max_per_category)


def popular_tags(positives: pd.DataFrame, movies: pd.DataFrame, itags: pd.Series, *, n: int = 6) -> list[str]:
    """The same tags for everyone (no LLM, no user): the ``n`` categories most often the
    category (:func:`item_category`) of a liked item in ``positives`` (training only), each
    as its most frequent phrase there. HR@K's popularity baseline."""
    data.require_columns(positives, ("item_id",), "positives")
    genres = movies.set_index("item_id")["genres"]
    cat_count: dict[str, int] = {}
    phrase_count: dict[str, dict[str, int]] = {}
    for item_id, k in positives["item_id"].value_counts().items():
        c = item_category(genres[item_id])
        if c is None:
            continue
        cat_count[c] = cat_count.get(c, 0) + int(k)
        for p in itags.get(item_id, ()):
            if tag_category(p) == c:
                phrase_count.setdefault(c, {})[p] = phrase_count.setdefault(c, {}).get(p, 0) + int(k)
    out = []
    for c in sorted(cat_count, key=lambda c: (-cat_count[c], c)):
        if phrase_count.get(c):
            out.append(min(phrase_count[c], key=lambda p: (-phrase_count[c][p], p)))
        if len(out) == n:
            break
    return out


def _by_category(phrase_score: dict, cat_score: dict, n: int, max_per_category: int) -> list[str]:
    """Categories in order of ``cat_score``; round r takes each category's r-th best phrase
    (by ``phrase_score``), so the first tags cover as many categories as possible."""
    per: dict[str, list[str]] = {}
    for p in sorted(phrase_score, key=lambda p: (-phrase_score[p], p)):
        per.setdefault(tag_category(p), []).append(p)
    cats = sorted(per, key=lambda c: (-cat_score.get(c, 0.0), c))
    out: list[str] = []
    for r in range(max_per_category):
        for c in cats:
            if len(per[c]) > r:
                out.append(per[c][r])
                if len(out) == n:
                    return out
    return out


def recent_tags(items: Sequence[int], itags: pd.Series, *, n: int = 6, last: int = 50,
                max_per_category: int = 2) -> list[str]:
    """A rule-based tag predictor (no LLM): the categories of the user's ``last`` liked
    items, most frequent first (newer items break ties), each as its most frequent phrase
    there; a second phrase per category only once every category has one. The baseline any
    tag model has to beat."""
    items = [int(i) for i in items][-last:]
    phrase_score: dict[str, float] = {}
    cat_score: dict[str, float] = {}
    for rank, i in enumerate(items):
        w = 1.0 + rank * 1e-6  # a count; recency only breaks ties
        for p in itags.get(i, ()):
            phrase_score[p] = phrase_score.get(p, 0.0) + w
        if len(itags.get(i, ())):
            c = tag_category(itags[i][0])
            cat_score[c] = cat_score.get(c, 0.0) + w
    return _by_category(phrase_score, cat_score, n, max_per_category)


# --------------------------------------------------------------------------------------------
# Prompts (RecGPT style, sized for a 135M model)
# --------------------------------------------------------------------------------------------

INTEREST_PROMPT = (
    "A movie fan's ratings, grouped by date, oldest first. Each film is written as title 'year "
    "(kinds of film).\n{history}\n\n"
    "List {n} interests of this fan. Each interest is a short phrase, a modifier and a kind of "
    "film, like \"90s sci-fi\", \"animated comedy\" or \"crime drama\". One per line, no "
    "explanations."
)
TAG_PROMPT = (
    "A movie fan's ratings, grouped by date, oldest first. Each film is written as title 'year "
    "(kinds of film).\n{history}\n\nTheir interests: {interests}.\n\n"
    "Suggest {n} tags for movies this fan will like next. Each tag is a modifier and a kind of "
    "film, like \"90s sci-fi\" or \"romantic comedy\". Cover different kinds of film and do not "
    "name films they already rated. One per line."
)


def interest_prompt(history_text: str, n: int = 5) -> str:
    """LLM_UI's prompt: the compressed history, then the task (a list of ``n`` phrases)."""
    if not history_text.strip():
        raise ValueError("history_text is empty: a user needs at least one rating to mine interests from")
    return INTEREST_PROMPT.format(history=history_text, n=n)


def tag_prompt(history_text: str, interests: Sequence[str], n: int = 6) -> str:
    """LLM_IT's prompt: compressed history, the mined interests, the task with its
    constraints (diverse, fresh)."""
    if not history_text.strip():
        raise ValueError("history_text is empty: a user needs at least one rating to predict tags from")
    shown = ", ".join(interests) if interests else "unknown"
    return TAG_PROMPT.format(history=history_text, interests=shown, n=n)


def format_answer(phrases: Sequence[str]) -> str:
    """A target answer as the model should write it: a numbered list, one phrase a line."""
    return "\n".join(f"{i}. {p}" for i, p in enumerate(phrases, 1))


def parse_phrases(text: str, n: int):
    """Parse a generated list of phrases (:func:`generation.parse_list`, at most ``n``, at
    most 5 words each); returns the ParseResult."""
    from llmrec_lib import generation

    return generation.parse_list(text, max_items=n, min_items=1, max_words=5)


# --------------------------------------------------------------------------------------------
# Judges (measured rates standing in for RecGPT's LLM judges)
# --------------------------------------------------------------------------------------------

_DECADE_RE = re.compile(r"(?<![\w'])'?((?:1[89]|20)?\d0)s\b")
_STOP = frozenset("movie movies film films cinema kind kinds genre genres type types style the and "
                  "with for from about like likes of a an in on to fan fans".split())



@dataclass
class ItemFacts:
    """What the judges may check a phrase against, per item: its categories, its decade, and
    the content words of its name and (training-time) user tags."""

    cats: dict
    decade: dict
    words: dict
    names: dict
    primary: dict

    @classmethod
    def build(cls, movies: pd.DataFrame, tags: pd.DataFrame | None = None) -> "ItemFacts":
        data.require_columns(movies, ("item_id", "name", "year", "genres"), "movies")
        tag_words: dict[int, set] = {}
        if tags is not None and len(tags):
            for i, t in zip(tags["item_id"].tolist(), tags["tag"].astype(str).str.casefold()):
                tag_words.setdefault(int(i), set()).update(_content_words(t))
        cats, dec, words, names, primary = {}, {}, {}, {}, {}
        for i, name, year, genres in zip(movies["item_id"].tolist(), movies["name"].astype(str),
                                         movies["year"], movies["genres"]):
            cats[i] = frozenset(item_categories(genres))
            dec[i] = decade_label(year)
            words[i] = frozenset(_content_words(name.casefold()) | tag_words.get(i, set()))
            names[i] = name.casefold()
            primary[i] = item_category(genres)
        return cls(cats, dec, words, names, primary)

    def support_set(self, phrase: str) -> frozenset:
        """Every catalogue item that supports ``phrase`` (the items ``i`` with
        ``supports(phrase, i, self)``), from inverted indexes; cached per phrase."""
        cache = self.__dict__.setdefault("_support_cache", {})
        if phrase in cache:
            return cache[phrase]
        idx = self.__dict__.get("_index")
        if idx is None:
            idx = {"cat": {}, "dec": {}, "word": {}}
            for i, cs in self.cats.items():
                for c in cs:
                    idx["cat"].setdefault(c, set()).add(i)
            for i, d in self.decade.items():
                if d is not None:
                    idx["dec"].setdefault(d, set()).add(i)
            for i, ws in self.words.items():
                for w in ws:
                    idx["word"].setdefault(w, set()).add(i)
            self.__dict__["_index"] = idx
        cats, dec = tag_categories(phrase), phrase_decade(phrase)
        if cats or dec:
            sets = [idx["cat"].get(c, set()) for c in cats] + ([idx["dec"].get(dec, set())] if dec else [])
            out = frozenset(set.intersection(*sets))
        else:
            out = frozenset().union(*(idx["word"].get(w, ()) for w in _content_words(phrase.casefold())))
        cache[phrase] = out
        return out


def _content_words(s: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9][a-z0-9'\-]+", s) if len(w) >= 3 and w not in _STOP}


def phrase_decade(phrase: str) -> str | None:
    """The decade a phrase names, as :func:`decade_label` writes it ("90s", "1990s" and "'90s"
    -> "90s"; "00s" -> "2000s"), or None."""
    m = _DECADE_RE.search(phrase.casefold())
    if not m:
        return None
    d = m.group(1)
    year = int(d) if len(d) == 4 else (1900 + int(d) if int(d) >= 20 else 2000 + int(d))
    return decade_label(year)


def supports(phrase: str, item: int, facts: ItemFacts) -> bool:
    """Does ``item`` have what ``phrase`` says? Every category the phrase names is one of the
    item's, and its decade (if it names one) is the item's; a phrase naming neither is
    supported when it shares a content word with the item's name or user tags."""
    cats = tag_categories(phrase)
    dec = phrase_decade(phrase)
    if cats or dec:
        return set(cats) <= facts.cats.get(item, frozenset()) and (dec is None or facts.decade.get(item) == dec)
    words = _content_words(phrase.casefold())
    return bool(words & facts.words.get(item, frozenset()))


def answer_categories(phrases: Sequence[str]) -> set[str]:
    """The categories an answer names: the head categories (:func:`tag_category`) of its
    phrases, unmapped phrases left out."""
    return {tag_category(p) for p in phrases} - {UNMAPPED}


def population_categories(liked_items: Iterable[int], facts: ItemFacts, n: int = 5) -> list[str]:
    """The population's modal answer: the ``n`` categories most often the category
    (:func:`item_category`) of a liked film, each like counted once (ties alphabetically).
    Pass every like of the population (e.g. the training positives' item ids)."""
    counts: dict[str, int] = {}
    for i in liked_items:
        c = facts.primary.get(int(i))
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    return sorted(counts, key=lambda c: (-counts[c], c))[:n]


def category_interests(items: Sequence[int], facts: ItemFacts, n: int = 5) -> list[str]:
    """The counting rule as an answer: the ``n`` categories most often the category of a
    film in ``items`` (:func:`population_categories`), each written as its core word
    (:data:`GENRE_CORE`: "crime film", "sci-fi"). Given every liked film of one user it is
    the *per-user counting rule*; given everybody's training likes it is the *constant
    answer* everyone receives."""
    return [GENRE_CORE[c] for c in population_categories(items, facts, n)]


def _item_weights(users_items: dict) -> dict[int, float]:
    """w_i = mean over users (with at least one item) of [i in their items] / their item
    count: the share of an average user's (distinct) items that is item i."""
    w: dict[int, float] = {}
    lists = [list(dict.fromkeys(int(i) for i in v)) for v in users_items.values()]
    lists = [v for v in lists if v]
    for v in lists:
        for i in v:
            w[i] = w.get(i, 0.0) + 1.0 / (len(v) * len(lists))
    return w


def judge_interests(interests: dict, history: dict, future: dict, facts: ItemFacts, *, n_requested: int,
                    min_support: int = 3, population: dict | None = None,
                    population_future: dict | None = None,
                    population_answer: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-user judge rates of mined interests (RecGPT uses LLM judges trained on human
    labels; these are rules anyone can re-run). Each judge compares an answer with what the
    *same answer* would score for an average user of a population, so that an answer that
    says the same thing to everybody cannot score well by being about popular films.

    Notation: ``H`` the user's distinct liked history films (what the model could see), ``n``
    their number, ``k(p)`` how many of them support phrase ``p`` (:func:`supports`), ``C`` the
    answer's categories (:func:`answer_categories`), ``F`` the user's liked films of the
    judging window (never shown to a model).

    * ``supported``: share of the phrases with ``k(p) >= need``, ``need = max(1,
      min(min_support, n))`` (a short history asks for less);
    * ``grounding``: share of the phrases that are supported *and specific*: the user's share
      ``k(p) / n`` is above the population's base rate ``pi(p)``, the share of an average
      population user's liked films that support ``p``. "Drama" is grounded only for a user
      whose history is more dramatic than the average user's;
    * ``hallucination``: share of the phrases with ``k(p) == 0`` (nothing in the history has
      what they name);
    * ``recall``: share of ``F`` whose category (:func:`item_category`) is in ``C`` (the
      judge called *predictiveness* before this function had precision and a base rate);
    * ``precision``: share of ``C`` that is the category of at least one film in ``F``;
    * ``recall_lift``, ``precision_lift``: recall (precision) minus the mean recall
      (precision) the *same* categories ``C`` reach on the judging windows of the population's
      users: how much better the answer predicts this user's future than an average user's.
      A constant answer's lift averages zero over the population by construction;
    * ``personalization``: ``1 - |C & P| / |C | P|``, one minus the Jaccard overlap with the
      population's modal answer ``P`` (``population_answer``, categories; default: the
      ``n_requested`` categories most often liked in ``population``,
      :func:`population_categories`);
    * ``diversity``: ``|C| / n_requested``.

    ``population`` (user -> liked history items, default ``history``) defines ``pi``;
    ``population_future`` (user -> judging-window items, default ``future``) defines the lift's
    base rates; users with no items are left out of both. Pass every user of the stage, not
    only the judged ones.

    A user with no parsed interest scores 0 on every judge but hallucination, which is 1: an
    empty answer is a failed answer, not a missing one. Recall, precision and their lifts are
    NaN for a user with no future liked film.

    Args: ``interests`` user -> phrases; ``history`` user -> liked item ids; ``future`` user
    -> liked item ids of the judging window. Users are those of ``interests``.
    """
    population = history if population is None else population
    population_future = future if population_future is None else population_future
    w_hist = _item_weights(population)
    if population_answer is None:
        population_answer = population_categories(
            (i for v in population.values() for i in dict.fromkeys(v)), facts, n_requested)
    pop_cats = set(population_answer)
    # base rates of the judging window: q[c] = an average user's share of future films in
    # category c; h[c] = share of users with at least one future film in c
    futs = [list(v) for v in population_future.values() if len(v)]
    q: dict = {}
    h: dict = {}
    for v in futs:
        cs = [facts.primary.get(int(i)) for i in v]
        for c in cs:
            q[c] = q.get(c, 0.0) + 1.0 / (len(cs) * len(futs))
        for c in set(cs):
            h[c] = h.get(c, 0.0) + 1.0 / len(futs)
    pi_cache: dict[str, float] = {}

    def pi(p):
        if p not in pi_cache:
            pi_cache[p] = float(sum(w_hist.get(i, 0.0) for i in facts.support_set(p)))
        return pi_cache[p]

    cols = ["n", "grounding", "supported", "hallucination", "precision", "recall", "precision_lift",
            "recall_lift", "personalization", "diversity"]
    rows = []
    for u, phrases in interests.items():
        hist = list(dict.fromkeys(int(i) for i in history.get(u, ())))
        fut = list(future.get(u, ()))
        nan = np.nan
        if not phrases:
            z = 0.0 if fut else nan
            rows.append((u, 0, 0.0, 0.0, 1.0, z, z, z, z, 0.0, 0.0))
            continue
        n = len(hist)
        need = max(1, min(min_support, n))
        hset = set(hist)
        k = [len(hset & facts.support_set(p)) for p in phrases]
        supported = [kk >= need for kk in k]
        grounded = [s and kk / n > pi(p) for s, kk, p in zip(supported, k, phrases)]
        cats = answer_categories(phrases)
        if fut:
            fcats = [facts.primary.get(int(i)) for i in fut]
            recall = float(np.mean([c in cats for c in fcats]))
            precision = len(cats & set(fcats)) / len(cats) if cats else 0.0
            recall_lift = recall - sum(q.get(c, 0.0) for c in cats)
            precision_lift = precision - (float(np.mean([h.get(c, 0.0) for c in cats])) if cats else 0.0)
        else:
            recall = precision = recall_lift = precision_lift = nan
        pers = 1.0 - len(cats & pop_cats) / len(cats | pop_cats) if cats else 0.0
        rows.append((u, len(phrases), float(np.mean(grounded)), float(np.mean(supported)),
                     float(np.mean([kk == 0 for kk in k])), precision, recall, precision_lift, recall_lift,
                     pers, len(cats) / n_requested))
    return pd.DataFrame(rows, columns=["user_id"] + cols).set_index("user_id")


def judge_tags(tags: dict, future: dict, recent: dict, facts: ItemFacts, *, k: int,
               n_requested: int) -> pd.DataFrame:
    """Per-user rates of predicted tags:

    * ``hr@k``: share of the user's future liked items whose category (:func:`item_category`)
      is the category (:func:`tag_category`) of one of the first ``k`` tags: RecGPT's HR@30,
      averaged over all the window's items instead of only the next one (less noise);
    * ``stale``: share of tags that name a film the user rated recently (``recent``: user ->
      item ids), the freshness constraint broken;
    * ``unmapped``: share of tags that name no category (can never hit);
    * ``diversity``: distinct categories among the tags / ``n_requested``.
    """
    rows = []
    for u, phrases in tags.items():
        fut = list(future.get(u, ()))
        top = phrases[:k]
        heads = {tag_category(p) for p in top} - {UNMAPPED}
        hr = np.mean([facts.primary.get(i) in heads for i in fut]) if fut else np.nan
        names = [facts.names[i] for i in recent.get(u, ()) if len(facts.names.get(i, "")) >= 4]
        low = [p.casefold() for p in phrases]
        stale = np.mean([any(nm in p for nm in names) for p in low]) if phrases else 0.0
        unm = np.mean([tag_category(p) == UNMAPPED for p in phrases]) if phrases else 1.0
        div = len({tag_category(p) for p in phrases} - {UNMAPPED}) / n_requested
        rows.append((u, len(phrases), float(hr), float(stale), float(unm), div))
    return pd.DataFrame(rows, columns=["user_id", "n", f"hr@{k}", "stale", "unmapped", "diversity"]).set_index("user_id")


def rate_table(judged: dict, columns: Sequence[str] | None = None, n_boot: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap interval (:func:`metrics.bootstrap_ci`, users resampled) of
    each judge column, for each system: a long table system, judge, mean, lo, hi, n_users.
    Users whose rate is undefined (NaN: e.g. no future positives) are left out."""
    from llmrec_lib import metrics

    rows = []
    for name, df in judged.items():
        for col in (columns or [c for c in df.columns if c != "n"]):
            ci = metrics.bootstrap_ci(df[col].to_numpy(float), n_boot=n_boot, seed=seed, nan_policy="omit")
            rows.append({"system": name, "judge": col, "mean": ci.mean, "lo": ci.lo, "hi": ci.hi,
                         "n_users": int(df[col].notna().sum())})
    return pd.DataFrame(rows)


def paired_rate_table(judged: dict, reference: str, columns: Sequence[str] | None = None,
                      n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each system minus ``reference``, user by user, on the users both judged
    (:func:`metrics.paired_bootstrap`): a long table system, judge, diff, lo, hi, p, n_users.
    Paired differences are what "system A beats system B on this judge" means when both
    answered the same users: a difference interval that excludes 0."""
    from llmrec_lib import metrics

    ref = judged[reference]
    rows = []
    for name, df in judged.items():
        if name == reference:
            continue
        common = df.index.intersection(ref.index)
        for col in (columns or [c for c in ref.columns if c != "n"]):
            r = metrics.paired_bootstrap(df.loc[common, col].to_numpy(float), ref.loc[common, col].to_numpy(float),
                                         n_boot=n_boot, seed=seed, nan_policy="omit")
            rows.append({"system": name, "judge": col, "diff": r.mean_diff, "lo": r.lo, "hi": r.hi,
                         "p": r.p_value, "n_users": r.n})
    return pd.DataFrame(rows)


def history_before(ratings: pd.DataFrame, cutoff: dict) -> pd.DataFrame:
    """Each user's ratings strictly before their own ``cutoff`` timestamp (user -> ts); users
    without a cutoff are dropped. The staleness experiment mines interests from
    ``history_before(h, window_start - k weeks)`` instead of the whole history ``h``."""
    data.require_columns(ratings, ("user_id", "timestamp"), "ratings")
    limit = ratings["user_id"].map(cutoff)
    return ratings[limit.notna() & (ratings["timestamp"] < limit)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# The pipeline: data, fine-tuning examples, generation, artifacts
# --------------------------------------------------------------------------------------------

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
    MovieLens layout (a reader's own, or a derived copy; ``tags.csv`` may be missing)."""
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

    Returns a DataFrame: user_id, cut (timestamp), task, prompt, answer.
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
    history and those interests. Returns {"interests": {u: phrases}, "tags": {u: phrases},
    "raw": [{"user_id", "task", "text", "ok", "reason"}], "reports": {task: ParseReport}}."""
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
    prompt they answered, so a test can check the code still writes it."""
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()[:16]


def eval_users(setting: Setting, n: int | None, seed: int = 0, stage: str = "test") -> list[int]:
    """The users an LLM run covers: all of ``stage``'s users, or a seeded sample of ``n``."""
    users = setting.split.users(stage)
    if n is None or n >= len(users):
        return [int(u) for u in users]
    return sorted(int(u) for u in np.random.default_rng(seed).choice(users, size=n, replace=False))


ADAPTER = "adapter"
GENERATIONS = "generations.jsonl"
META = "meta.json"


def split_examples(ex: pd.DataFrame, val_share: float = 0.05, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) examples, split by user so no validation user is trained on."""
    users = np.sort(ex["user_id"].unique())
    n_val = max(1, int(round(val_share * len(users))))
    val = set(np.random.default_rng(seed).choice(users, size=n_val, replace=False).tolist())
    is_val = ex["user_id"].isin(val)
    return ex[~is_val].reset_index(drop=True), ex[is_val].reset_index(drop=True)


def default_sft_config(mode: str = "full", seed: int = 0):
    from llmrec_lib import sft

    if mode == "full":
        return sft.SFTConfig(steps=120, batch_size=8, lr=3e-4, warmup=6, max_len=384, seed=seed, save_every=10)
    return sft.SFTConfig(steps=2, batch_size=2, lr=3e-4, warmup=0, max_len=384, seed=seed, save_every=1)


def generation_config():
    from llmrec_lib import generation

    return generation.GenerationConfig(max_new_tokens=GEN_MAX_NEW_TOKENS, batch_size=8)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(path)


def read_generations(path: Path | None = None) -> pd.DataFrame:
    """The committed generations: user_id, task, source, text, ok, reason, prompt_sha."""
    import json

    path = Path(path) if path is not None else artifacts_dir() / GENERATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m llmrec_lib.recgpt full` (see artifacts/recgpt/README.md)")
    return pd.DataFrame([json.loads(x) for x in path.read_text().splitlines() if x.strip()])


def phrases_from_generations(gen: pd.DataFrame, source: str, task: str) -> dict[int, list[str]]:
    """user_id -> parsed phrases of one (source, task) in the generations table (parsed again
    with the current :func:`parse_phrases`, so a parser fix applies to committed text)."""
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
    """
    import dataclasses
    import json
    import platform
    import time

    import torch

    from llmrec_lib import config, generation, sft

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

    cfg = default_sft_config("full", seed)
    if steps is not None:
        cfg = dataclasses.replace(cfg, steps=int(steps), warmup=min(cfg.warmup, int(steps) - 1))
    if sft_overrides:
        cfg = dataclasses.replace(cfg, **sft_overrides)
    val_pairs = list(zip(va["prompt"], va["answer"]))
    adapter_dir = out / ADAPTER
    fitted = sft.fit(backbone, list(zip(tr["prompt"], tr["answer"])), val_pairs, cfg, work, adapter_dir,
                     command=command)
    timings["sft"] = fitted["seconds"]
    base_val, tuned_val = fitted["val_loss_base"], fitted["val_loss_tuned"]

    users = eval_users(setting, n_users, seed)
    inputs = setting.stage_inputs("test")
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
        write_jsonl(out / GENERATIONS, rows)  # after each source: a kill keeps what finished
        print(f"{source}: {timings[f'generate_{source}']:.0f} s", flush=True)
    pos = setting.split.train[setting.split.train["rating"] >= data.POSITIVE_MIN]
    pop = popular_tags(pos, setting.ml.movies, setting.itags, n=N_TAGS)
    for u in inputs["users"]:
        tag_rows.append({"user_id": u, "tags": recent_tags(inputs["liked"][u], setting.itags, n=N_TAGS),
                         "source": "rule-based"})
        tag_rows.append({"user_id": u, "tags": pop, "source": "popular"})
    write_jsonl(out / "tags_test.jsonl", tag_rows)
    meta = {
        "command": command, "backbone": backbone, "seed": seed, "n_users": len(users), "users": users,
        "n_train_examples": len(tr), "n_val_examples": len(va), "sft_config": sft.config_dict(cfg),
        "val_loss_base": base_val, "val_loss_tuned": tuned_val, "parse_reports": reports,
        "generation_config": dataclasses.asdict(generation_config()), "history_budget": HISTORY_BUDGET,
        "timings_s": timings, "wall_s": time.perf_counter() - t_all,
        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "examples_sha": short_sha("".join(ex["prompt"] + ex["answer"])),
    }
    (out / META).write_text(json.dumps(meta, indent=1, default=float))
    return meta


def main(argv: list[str] | None = None) -> int:
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

