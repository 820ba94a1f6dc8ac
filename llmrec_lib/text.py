"""Items and users as text, following LinkedIn's recipe [linkedin2025retrieval].

LinkedIn feeds one causal LLM two kinds of prompt: a post's features and a member's profile
plus the posts they engaged with. Three choices from that paper shape this module:

* **Marker tokens.** Each field starts with a marker (``[ITEM]``, ``[GENRES]``, ``[TAGS]``...)
  registered in the tokenizer as a single special token: shorter prompts than spelled-out
  labels, and text inside a field can never forge a marker.
* **Numbers as buckets.** A raw count ("215") is a few digit tokens whose magnitude the model
  barely reads; a percentile bucket token (``[POP_7]``) is one token that means "more popular
  than about 70-80% of the catalogue". Popularity is computed from *training* ratings only.
* **Positive-only histories** under a token budget, most recent items kept, whole items only.

Token lengths are measured with the real tokenizer. Each item's text is tokenized once and the
lengths summed per user (exact when items start with a registered marker, since special tokens
split the text), then every final prompt is measured once and trimmed again if needed, so the
budget holds for any tokenizer.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import interactions
from llmrec_lib.interactions import newest_that_fit

# Field markers. "[ITEM]" opens every item text, so in a user's history it also separates items.
ITEM = "[ITEM]"
GENRES = "[GENRES]"
TAGS = "[TAGS]"
POP = "[POP]"  # precedes a raw count; a bucket token needs no marker of its own
USER = "[USER]"
HISTORY = "[HISTORY]"
RATED = "[RATED]"
MARKERS = (ITEM, GENRES, TAGS, POP, USER, HISTORY, RATED)
N_BUCKETS = 10
POPULARITY_FORMATS = ("bucket", "count", None)
ITEM_FIELDS = ("title", "genres", "tags", "pop")


_MARKER_RE = re.compile(r"\[(ITEM|GENRES|TAGS|POP|USER|HISTORY|RATED|POP_\d+)\]")


def neutralize_markers(field: str) -> str:
    """Rewrite marker look-alikes inside a field's text (``"[POP_9]"`` -> ``"(POP_9)"``).

    Markers are special tokens, so a title or tag that contained ``[POP_9]`` would otherwise
    *become* the bucket token: the injection LinkedIn's markers are meant to prevent. Every
    field passes through here before it is placed behind a marker.

    Args:
        field: one field's text (a title, a genre, a tag).

    Returns:
        The text with every ``[MARKER]`` look-alike in round brackets.
    """
    return _MARKER_RE.sub(r"(\1)", field)


def pop_token(bucket: int) -> str:
    """The special token for popularity bucket ``bucket`` (0 = least popular).

    Args:
        bucket: the bucket, 0..n-1.

    Returns:
        ``"[POP_<bucket>]"``.
    """
    return f"[POP_{int(bucket)}]"


def marker_tokens(n_buckets: int = N_BUCKETS) -> list[str]:
    """All tokens :func:`add_markers` registers: field markers, then bucket tokens.

    Args:
        n_buckets: the number of popularity buckets.

    Returns:
        The token strings.
    """
    return list(MARKERS) + [pop_token(b) for b in range(n_buckets)]


def add_markers(tokenizer_or_backbone, n_buckets: int = N_BUCKETS) -> int:
    """Register the markers and ``[POP_0]..[POP_{n-1}]`` as single special tokens.

    Given a :class:`~llmrec_lib.backbones.Backbone`, its embedding matrix grows too (new rows
    drawn near the old ones); given a bare tokenizer, only the tokenizer changes (enough to
    count tokens). Idempotent; returns how many tokens were new.

    Args:
        tokenizer_or_backbone: a tokenizer, or a :class:`~llmrec_lib.backbones.Backbone`.
        n_buckets: the number of popularity buckets.

    Returns:
        How many tokens were new.
    """
    from llmrec_lib import backbones

    tokens = marker_tokens(n_buckets)
    if isinstance(tokenizer_or_backbone, backbones.Backbone):
        return backbones.add_special_tokens(tokenizer_or_backbone, tokens)
    return backbones.register_special_tokens(tokenizer_or_backbone, tokens)


MARKER_WORDS = {ITEM: "movie", GENRES: "genres", TAGS: "tags", POP: "popularity", USER: "user",
                HISTORY: "history", RATED: "rated"}


def marker_words(token: str, n_buckets: int = N_BUCKETS) -> str:
    """The plain words a marker stands for (``[POP_7]`` -> ``popularity 7 of 10``).

    Args:
        token: a marker or bucket token.
        n_buckets: the number of popularity buckets.

    Returns:
        The words.
    """
    if token in MARKER_WORDS:
        return MARKER_WORDS[token]
    match = re.fullmatch(r"\[POP_(\d+)\]", token)
    if not match:
        raise ValueError(f"{token!r} is not a marker of this module")
    return f"popularity {match.group(1)} of {n_buckets}"


def init_marker_embeddings(backbone, n_buckets: int = N_BUCKETS) -> int:
    """Register the markers (see :func:`add_markers`) and set each new embedding row to the
    mean embedding of the words it stands for.

    Deterministic, so a model rebuilt later has exactly the same rows, and meaningful from the
    first step: a frozen embedding matrix (LoRA training) keeps them, and ``[POP_3]`` and
    ``[POP_8]`` start as different vectors. Returns how many tokens were new.

    Args:
        backbone: the loaded backbone (its tokenizer and input embeddings change).
        n_buckets: the number of popularity buckets.

    Returns:
        How many tokens were new.
    """
    import torch

    added = add_markers(backbone, n_buckets)
    tok = backbone.tokenizer
    emb = backbone.model.get_input_embeddings().weight
    with torch.no_grad():
        for token in marker_tokens(n_buckets):
            ids = tok(" " + marker_words(token, n_buckets), add_special_tokens=False)["input_ids"]
            emb[tok.convert_tokens_to_ids(token)] = emb[ids].mean(0)
    return added


def count_tokens(tokenizer, texts: Sequence[str], add_special_tokens: bool = True) -> np.ndarray:
    """Token count of each text (with the tokenizer's own [CLS]/[SEP]/BOS when
    ``add_special_tokens``, i.e. what the model sees).

    Args:
        tokenizer: the tokenizer.
        texts: the texts (a sequence, not one string).
        add_special_tokens: count the tokenizer's special tokens too.

    Returns:
        An int64 array, one count per text.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    texts = list(texts)
    if not texts:
        return np.zeros(0, dtype=np.int64)
    ids = tokenizer(texts, add_special_tokens=add_special_tokens, verbose=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


# --------------------------------------------------------------------------------------------
# Numbers as text
# --------------------------------------------------------------------------------------------


def _finite_1d(values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values; fill or drop them first")
    return arr


def percentile_edges(values, n: int = N_BUCKETS) -> np.ndarray:
    """The ``n - 1`` inner quantile edges of ``values`` (the i/n quantiles, i = 1..n-1).

    Keep them to bucket new items later with the *training* distribution.

    Args:
        values: finite numbers.
        n: the number of buckets (>= 2).

    Returns:
        The ``n - 1`` edges, non-decreasing.
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    arr = _finite_1d(values, "values")
    return np.quantile(arr, np.arange(1, n) / n)


def percentile_buckets(values, n: int = N_BUCKETS, *, edges: np.ndarray | None = None) -> np.ndarray:
    """Bucket ``values`` into ``0..n-1`` by percentile (0 = lowest tenth when ``n=10``).

    Distinct values fall into equal-sized buckets. Tied values always share one bucket: the
    middle of the buckets their tie spans (a mid-rank percentile), so a count shared by most of
    the catalogue (say 1 rating) lands in the middle, not at an arbitrary end.
    ``edges`` (from :func:`percentile_edges`) buckets values against another distribution.

    Args:
        values: finite numbers.
        n: the number of buckets.
        edges: the edges to bucket against (default: those of ``values``).

    Returns:
        An int array of buckets, one per value.
    """
    arr = _finite_1d(values, "values")
    edges = percentile_edges(arr, n) if edges is None else np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size != n - 1 or np.any(np.diff(edges) < 0):
        raise ValueError(f"edges must be {n - 1} non-decreasing numbers (from percentile_edges(values, {n}))")
    lo = np.searchsorted(edges, arr, side="left")  # buckets strictly below the tie
    hi = np.searchsorted(edges, arr, side="right")  # last bucket the tie reaches
    return ((lo + hi) // 2).astype(np.int64)


def popularity_counts(train_ratings: pd.DataFrame, item_ids: Iterable[int]) -> pd.Series:
    """Number of ratings per item in ``train_ratings``, for every id in ``item_ids`` (0 if none).

    Pass the *training* ratings only (``split.train``): counting validation or test ratings
    would leak the future into every item's text.

    Args:
        train_ratings: the training ratings (``split.train``).
        item_ids: the catalogue (``ml.item_ids``), each id once.

    Returns:
        item_id -> count, for every id of the catalogue.
    """
    if "item_id" not in getattr(train_ratings, "columns", ()):
        raise ValueError("train_ratings must be a DataFrame with an item_id column (e.g. split.train)")
    index = pd.Index(np.asarray(list(item_ids) if not isinstance(item_ids, np.ndarray) else item_ids),
                     name="item_id")
    if index.has_duplicates:
        raise ValueError("item_ids contains duplicates; pass the catalogue once (ml.item_ids)")
    counts = train_ratings["item_id"].value_counts()
    unknown = counts.index.difference(index)
    if len(unknown):
        raise ValueError(f"{len(unknown)} rated items are not in item_ids (e.g. {list(unknown[:5])}); "
                         "pass the full catalogue (ml.item_ids)")
    return counts.reindex(index, fill_value=0).astype(np.int64).rename("n_ratings")


def popularity_buckets(counts: pd.Series, n: int = N_BUCKETS) -> pd.Series:
    """Percentile bucket of each item's training count, over the whole catalogue given.

    Args:
        counts: item_id -> training count (:func:`popularity_counts`).
        n: the number of buckets.

    Returns:
        item_id -> bucket, named "pop_bucket".
    """
    return pd.Series(percentile_buckets(counts.to_numpy(), n), index=counts.index, name="pop_bucket")


# --------------------------------------------------------------------------------------------
# Item text
# --------------------------------------------------------------------------------------------


def top_tags(tags: pd.DataFrame, k: int = 3) -> dict[int, list[str]]:
    """The ``k`` most used tags of each item: lower-cased, whitespace-collapsed, counted once
    per user, ties broken alphabetically (so the result is deterministic).

    Args:
        tags: user tags (user_id, item_id, tag), e.g. ``ml.tags``.
        k: the most tags per item.

    Returns:
        item_id -> up to ``k`` tags, most used first.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    interactions.require_columns(tags, ("user_id", "item_id", "tag"), "tags", "Pass ml.tags.")
    t = tags[["user_id", "item_id"]].copy()
    t["tag"] = tags["tag"].astype(str).str.lower().str.split().str.join(" ")
    t = t[t["tag"] != ""].drop_duplicates()
    counts = t.groupby(["item_id", "tag"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item_id", "n", "tag"], ascending=[True, False, True])
    top = counts.groupby("item_id").head(k)
    return {int(i): list(g) for i, g in top.groupby("item_id")["tag"]}


def training_tags(tags: pd.DataFrame, train_ratings: pd.DataFrame) -> pd.DataFrame:
    """The user tags a model trained on ``train_ratings`` may know: each tag written no later
    than its author's last training rating (authors with no training rating lose all tags).

    Per-user splits have no single cut-off date, so "before the test window" means before
    *the tagging user's* window; what other users tag later is the future for everyone.
    To be strict across users as well, pass ``tags[tags.timestamp <= cutoff]`` instead.

    Args:
        tags: user tags with timestamps (``ml.tags``).
        train_ratings: the training ratings (``split.train``).

    Returns:
        The tags kept, a subset of ``tags``' rows.
    """
    interactions.require_columns(tags, ("user_id", "item_id", "tag", "timestamp"), "tags",
                         "Pass ml.tags.")
    interactions.require_columns(train_ratings, ("user_id", "timestamp"), "train_ratings",
                         "Pass split.train.")
    last = train_ratings.groupby("user_id")["timestamp"].max()
    limit = tags["user_id"].map(last)
    return tags[limit.notna() & (tags["timestamp"] <= limit)].reset_index(drop=True)


def _title(name: str, year) -> str:
    return f"{name} ({int(year)})" if year is not None and not pd.isna(year) else str(name)


def render_item(
    title: str,
    genres: Sequence[str] = (),
    tags: Sequence[str] = (),
    *,
    pop_bucket: int | None = None,
    pop_count: int | None = None,
    markers: bool = True,
) -> str:
    """One item as text. Empty fields are left out.

    ``markers=True``: ``[ITEM] Toy Story (1995) [GENRES] Adventure, Animation [TAGS] pixar [POP_9]``
    ``markers=False``: ``Movie: Toy Story (1995). Genres: Adventure, Animation. Tags: pixar.
    Popularity: 9 of 10.`` Give at most one of ``pop_bucket`` (a bucket token) and
    ``pop_count`` (the raw number, for the "numbers as text" comparison).

    Args:
        title: the title with its year.
        genres: the genres.
        tags: the tags.
        pop_bucket: the popularity bucket (a token).
        pop_count: the raw training count (written as a number).
        markers: marker tokens (True) or plain sentences (False).

    Returns:
        The item's text.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if pop_bucket is not None and pop_count is not None:
        raise ValueError("give pop_bucket or pop_count, not both")
    title = neutralize_markers(title)
    genres = [neutralize_markers(g) for g in genres if g]
    tags = [neutralize_markers(t) for t in tags if t]
    if markers:
        parts = [f"{ITEM} {title}"]
        if genres:
            parts.append(f"{GENRES} {', '.join(genres)}")
        if tags:
            parts.append(f"{TAGS} {', '.join(tags)}")
        if pop_bucket is not None:
            parts.append(pop_token(pop_bucket))
        if pop_count is not None:
            parts.append(f"{POP} {int(pop_count)}")
        return " ".join(parts)
    parts = [f"Movie: {title}."]
    if genres:
        parts.append(f"Genres: {', '.join(genres)}.")
    if tags:
        parts.append(f"Tags: {', '.join(tags)}.")
    if pop_bucket is not None:
        parts.append(f"Popularity: {int(pop_bucket)} of {N_BUCKETS}.")
    if pop_count is not None:
        parts.append(f"Ratings: {int(pop_count)}.")
    return " ".join(parts)


def item_texts(
    movies: pd.DataFrame,
    *,
    fields: Sequence[str] = ITEM_FIELDS,
    tags: Mapping[int, Sequence[str]] | None = None,
    popularity: pd.Series | None = None,
    pop_format: str | None = "bucket",
    n_buckets: int = N_BUCKETS,
    markers: bool = True,
) -> pd.Series:
    """Text of every movie (a Series indexed by item_id), built with :func:`render_item`.

    Args:
        movies: ``ml.movies`` (item_id, name, year, genres).
        fields: any of ``"title", "genres", "tags", "pop"`` (title is always included).
        tags: item_id -> tags (from :func:`top_tags`); needed when ``"tags"`` is in fields.
        popularity: training rating counts per item (from :func:`popularity_counts` on
            ``split.train``); needed when ``"pop"`` is in fields. Buckets are percentiles over
            all items in ``popularity``.
        pop_format: ``"bucket"`` (one special token) or ``"count"`` (the raw number as text).
        n_buckets: the number of popularity buckets.
        markers: marker tokens (True) or plain sentences (False).

    Returns:
        item_id -> text.
    """
    unknown = set(fields) - set(ITEM_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; choose from {ITEM_FIELDS}")
    missing = {"item_id", "genres"} - set(movies.columns)
    if missing or not ({"name", "year"} <= set(movies.columns) or "title" in movies.columns):
        raise ValueError("movies must be ml.movies (item_id, name, year, genres)")
    if "tags" in fields and tags is None:
        raise ValueError('fields includes "tags": pass tags=top_tags(ml.tags)')
    use_pop = "pop" in fields
    if use_pop:
        if pop_format not in ("bucket", "count"):
            raise ValueError(f'pop_format must be "bucket" or "count", got {pop_format!r}')
        if popularity is None:
            raise ValueError('fields includes "pop": pass popularity=popularity_counts(split.train, ml.item_ids)')
        lacking = pd.Index(movies["item_id"]).difference(popularity.index)
        if len(lacking):
            raise ValueError(f"popularity lacks {len(lacking)} items (e.g. {list(lacking[:5])}); "
                             "compute it over the full catalogue")
        buckets = popularity_buckets(popularity, n_buckets)
    if "name" in movies.columns:
        titles = [_title(n, y) for n, y in zip(movies["name"], movies["year"])]
    else:
        titles = movies["title"].astype(str).tolist()
    out = []
    for item_id, title, genres in zip(movies["item_id"].tolist(), titles, movies["genres"]):
        out.append(render_item(
            title,
            list(genres) if "genres" in fields else (),
            (tags.get(item_id, ()) if "tags" in fields else ()),
            pop_bucket=int(buckets[item_id]) if use_pop and pop_format == "bucket" else None,
            pop_count=int(popularity[item_id]) if use_pop and pop_format == "count" else None,
            markers=markers,
        ))
    return pd.Series(out, index=pd.Index(movies["item_id"].to_numpy(), name="item_id"), name="text")


# --------------------------------------------------------------------------------------------
# User prompts
# --------------------------------------------------------------------------------------------


def format_rating(r: float) -> str:
    """A rating as a prompt shows it: ``4.5``, ``3`` (no trailing zeros).

    Args:
        r: the rating.

    Returns:
        Its text.
    """
    return f"{float(r):g}"


def user_prompts(
    ratings: pd.DataFrame,
    item_text: Mapping[int, str] | pd.Series,
    tokenizer,
    *,
    budget: int | None = 256,
    positive_only: bool = True,
    positive_min: float | None = None,
    show_rating: bool = False,
    markers: bool = True,
    users: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Each user's history as one prompt that fits ``budget`` tokens.

    The history is the user's ratings in ``ratings`` (pass ``split.history(stage)`` or
    ``split.train``, never the targets), positives only by default, in time order. When it does
    not fit, the oldest items are dropped whole until it does; an item is never cut in half.

    Args:
        ratings: user_id, item_id, rating, timestamp.
        item_text: item_id -> text of that item (from :func:`item_texts`, usually a short one:
            title and genres). With ``markers`` each text should start with ``[ITEM]``.
        tokenizer: the tokenizer that defines the budget (markers registered with
            :func:`add_markers` when ``markers``).
        budget: maximum tokens per prompt, special tokens included; None keeps everything.
        positive_only: keep ratings >= ``positive_min`` (default ``interactions.POSITIVE_MIN``) only.
        positive_min: the lowest rating that counts as positive (default
            ``interactions.POSITIVE_MIN``).
        show_rating: append each item's rating (useful with ``positive_only=False``).
        markers: ``[HISTORY]`` + items with ``[RATED] 4.5``; else plain sentences.
        users: users to render (default: every user in ``ratings``, even with no positives).

    Returns:
        A DataFrame indexed by position with columns user_id, prompt, n_tokens (measured),
        n_items (kept), n_history (available), item_ids (kept, oldest first).
    """
    _check_prompt_args(ratings, budget)
    item_text = pd.Series(item_text) if not isinstance(item_text, pd.Series) else item_text
    threshold = interactions.POSITIVE_MIN if positive_min is None else float(positive_min)
    all_users = np.asarray(pd.unique(ratings["user_id"]) if users is None else list(users))
    hist = _prompt_history(ratings, all_users, positive_only, threshold, item_text)
    prefix, prefix_len, seg_txt, seg_len = _prompt_pieces(
        hist, item_text, tokenizer, markers, show_rating, positive_only
    )
    if budget is not None and prefix_len > budget:
        raise ValueError(f"budget {budget} is smaller than the prompt's fixed part ({prefix_len} tokens)")

    hist_users = hist["user_id"].to_numpy()
    hist_items = hist["item_id"].to_numpy()
    starts = {u: s for u, s in zip(*np.unique(hist_users, return_index=True))}
    counts = {u: c for u, c in zip(*np.unique(hist_users, return_counts=True))}
    rows = []  # [user, start, count, kept]
    for u in all_users:
        s, c = starts.get(u, 0), counts.get(u, 0)
        k = c if budget is None else newest_that_fit(seg_len[s : s + c], budget - prefix_len)
        rows.append([u, s, c, k])

    def render(s: int, c: int, k: int) -> str:
        return prefix + "".join(seg_txt[s + c - k : s + c])

    prompts, n_tokens = _render_within(rows, render, tokenizer, budget)
    return pd.DataFrame({
        "user_id": [r[0] for r in rows],
        "prompt": prompts,
        "n_tokens": n_tokens.astype(np.int64),
        "n_items": np.array([r[3] for r in rows], dtype=np.int64),
        "n_history": np.array([r[2] for r in rows], dtype=np.int64),
        "item_ids": [hist_items[s + c - k : s + c] for _, s, c, k in rows],
    })


def _check_prompt_args(ratings: pd.DataFrame, budget) -> None:
    interactions.require_columns(ratings, interactions.RATING_COLUMNS, "ratings",
                         "Pass split.history(stage) or split.train.")
    if budget is not None and (not isinstance(budget, (int, np.integer)) or budget < 1):
        raise ValueError(f"budget must be a positive int or None, got {budget!r}")


def _prompt_history(ratings: pd.DataFrame, users: np.ndarray, positive_only: bool,
                    threshold: float, item_text: pd.Series) -> pd.DataFrame:
    """The rendered users' history rows (positives only by default), in time order; every
    item must have a text."""
    hist = ratings[ratings["user_id"].isin(users)]
    hist = interactions.positives(hist, threshold) if positive_only else interactions.in_time_order(hist)
    unknown = pd.Index(hist["item_id"].unique()).difference(item_text.index)
    if len(unknown):
        raise KeyError(f"{len(unknown)} history items have no text (e.g. {list(unknown[:5])}); "
                       "build item_text over the whole catalogue")
    return hist


def _prompt_pieces(hist: pd.DataFrame, item_text: pd.Series, tokenizer, markers: bool,
                   show_rating: bool, positive_only: bool):
    """The prompt's fixed prefix (text, tokens) and one text segment per history row with its
    token length, each distinct piece tokenized once."""
    if markers:
        prefix = HISTORY
        item_piece = item_text.astype(str)
        rating_piece = lambda r: f"{RATED} {format_rating(r)}"  # noqa: E731
    else:
        prefix = "Movies this user rated, oldest first:" if show_rating or not positive_only else \
            "Movies this user liked, oldest first:"
        item_piece = "\n" + item_text.astype(str)
        rating_piece = lambda r: f" (rated {format_rating(r)})"  # noqa: E731
    used = pd.Index(hist["item_id"].unique())
    item_piece = item_piece.reindex(used)
    item_len = pd.Series(count_tokens(tokenizer, item_piece.tolist(), add_special_tokens=False),
                         index=used)
    prefix_len = int(count_tokens(tokenizer, [prefix], add_special_tokens=True)[0])
    seg_len = item_len.reindex(hist["item_id"]).to_numpy()
    seg_txt = item_piece.reindex(hist["item_id"]).to_numpy(dtype=object)
    if show_rating:
        uniq_r = np.unique(hist["rating"].to_numpy())
        r_text = {float(r): rating_piece(r) for r in uniq_r}
        r_len = dict(zip(r_text, count_tokens(tokenizer, list(r_text.values()),
                                              add_special_tokens=False)))
        ratings_all = hist["rating"].to_numpy(dtype=np.float64)
        seg_len = seg_len + np.array([r_len[r] for r in ratings_all], dtype=np.int64)
        seg_txt = seg_txt + np.array([r_text[r] for r in ratings_all], dtype=object)
    return prefix, prefix_len, seg_txt, seg_len


def _render_within(rows: list, render, tokenizer, budget: int | None):
    """Render every row's prompt and measure it. Summed lengths are exact when every piece
    starts with a special token; otherwise a boundary may merge or split differently, so drop
    the oldest kept item of a prompt over ``budget`` until its measured length fits."""
    prompts = [render(s, c, k) for _, s, c, k in rows]
    n_tokens = count_tokens(tokenizer, prompts)
    if budget is not None:
        over = np.flatnonzero(n_tokens > budget)
        while over.size:
            for j in over:
                rows[j][3] -= 1
                prompts[j] = render(*rows[j][1:])
            n_tokens[over] = count_tokens(tokenizer, [prompts[j] for j in over])
            over = over[n_tokens[over] > budget]
    return prompts, n_tokens


def fit_shares(n_tokens: Sequence[int], budgets: Sequence[int] = (128, 256, 512, 1024)) -> dict[int, float]:
    """Share of prompts whose full length fits each budget.

    Args:
        n_tokens: each prompt's full length.
        budgets: the budgets, in tokens.

    Returns:
        budget -> share of prompts that fit, in [0, 1].
    """
    arr = np.asarray(n_tokens)
    if arr.size == 0:
        raise ValueError("n_tokens is empty")
    return {int(b): float((arr <= b).mean()) for b in budgets}
