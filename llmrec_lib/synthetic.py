"""A seeded synthetic world with planted interests: ground truth for tests and lessons.

Real data never tells us *why* a user clicked. Here we know: each user has a few planted
interests (topics); each day they are shown a slate of items (impressions) and click the ones
that match an interest with high probability, others rarely. The world is returned in the
same layout as MovieLens (``ratings``, ``movies``, ``tags``) so that every split, model and
metric of the book runs on it unchanged:

* a click becomes a rating of 5.0 (a positive, >= ``data.POSITIVE_MIN``);
* an impression without a click becomes a rating of 1.0 (seen but disliked, <= ``NEGATIVE_MAX``),
  the analogue of LinkedIn's "shown but not engaged" hard negatives.

It builds in well under a second for the default size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import MovieLens

TOPICS = (
    ("space", "Sci-Fi", ["galactic", "orbital", "alien", "starship", "cosmic"]),
    ("heist", "Crime", ["daring", "midnight", "bank", "diamond", "perfect"]),
    ("romance", "Romance", ["summer", "paris", "second-chance", "wedding", "secret"]),
    ("horror", "Horror", ["haunted", "cursed", "midnight", "silent", "bloody"]),
    ("animation", "Animation", ["talking", "magical", "tiny", "brave", "singing"]),
    ("war", "War", ["frontline", "winter", "naval", "resistance", "desert"]),
    ("western", "Western", ["dusty", "outlaw", "frontier", "lonesome", "gold-rush"]),
    ("documentary", "Documentary", ["true", "wild", "hidden", "ocean", "mountain"]),
)
CORES = {
    "space": ["odyssey", "colony", "invasion", "voyage"],
    "heist": ["job", "caper", "robbery", "score"],
    "romance": ["affair", "love story", "letters", "promise"],
    "horror": ["house", "curse", "night", "woods"],
    "animation": ["adventure", "kingdom", "friends", "journey"],
    "war": ["battalion", "siege", "escape", "front"],
    "western": ["showdown", "trail", "ranch", "bounty"],
    "documentary": ["planet", "lives", "story", "expedition"],
}


@dataclass
class World:
    """The synthetic data set and its ground truth."""

    ml: MovieLens
    impressions: pd.DataFrame  # user_id, item_id, timestamp, clicked
    user_interests: dict[int, list[int]]  # user_id -> planted topic indices
    item_topic: pd.Series  # item_id -> topic index
    topics: list[str]

    def interest_names(self, user_id: int) -> list[str]:
        """The names of ``user_id``'s planted interests (topics), in topic order."""
        return [self.topics[t] for t in self.user_interests[user_id]]

    def interest_precision(self, user_ids, topk_item_ids, k: int) -> np.ndarray:
        """Per user, the share of the top ``k`` items whose topic is one of the user's planted
        interests: a ground truth no real data set has. ``topk_item_ids`` (n_users, >= k) item
        ids, -1 = empty slot (counts as a miss)."""
        ids = np.asarray(topk_item_ids)[:, :k]
        topic = self.item_topic.reindex(ids.ravel()).to_numpy().reshape(ids.shape)
        out = np.empty(len(ids))
        for row, u in enumerate(np.asarray(user_ids)):
            mine = set(self.user_interests[int(u)])
            out[row] = np.mean([t in mine for t in topic[row]]) if k else np.nan
        return out


def make_world(
    n_users: int = 200,
    n_items: int = 400,
    n_days: int = 30,
    slate_size: int = 8,
    interests_per_user: tuple[int, int] = (1, 3),
    p_click_interest: float = 0.6,
    p_click_other: float = 0.03,
    share_interest_in_slate: float = 0.4,
    seed: int = 0,
) -> World:
    """Build a world: items with text, users with planted interests, impressions and clicks.

    Each user is active on a random subset of days; on each active day they see a slate with
    about ``share_interest_in_slate`` items from their interests and the rest at random.

    Args:
        n_users: how many users.
        n_items: how many items; at least one per topic.
        n_days: days the world runs; each user is active on 2 or more of them.
        slate_size: items shown per active day (fewer when an item repeats or was seen).
        interests_per_user: (fewest, most) planted topics per user, drawn uniformly.
        p_click_interest: click probability of a shown item in one of the user's interests.
        p_click_other: click probability of any other shown item.
        share_interest_in_slate: expected share of a slate drawn from the user's interests.
        seed: the seed of the one random generator every draw comes from.

    Returns:
        The :class:`World`: the MovieLens-shaped data and its ground truth.
    """
    if n_items < len(TOPICS) or n_users < 1 or slate_size < 1:
        raise ValueError(f"need n_items >= {len(TOPICS)}, n_users >= 1 and slate_size >= 1")
    rng = np.random.default_rng(seed)
    item_topic, popularity, movies = _make_items(rng, n_items)
    interests, imp = _make_impressions(
        rng, item_topic, popularity, n_users, n_days, slate_size, interests_per_user,
        p_click_interest, p_click_other, share_interest_in_slate,
    )
    item_ids = movies["item_id"].to_numpy()
    return World(
        ml=_as_movielens(imp, movies, item_topic),
        impressions=imp,
        user_interests=interests,
        item_topic=pd.Series(item_topic, index=item_ids, name="topic"),
        topics=[t[0] for t in TOPICS],
    )


T0 = 1_500_000_000  # the world's first day, as a Unix time (July 2017)


def _make_items(rng: np.random.Generator, n_items: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Items: a topic each, a Zipf-ish popularity (which of a topic's items a slate shows), a
    title from a modifier and a core word, a year, the topic's genre plus sometimes a second
    one. Returns (topic index per item, popularity per item, the movies frame); the item in
    row i has id i + 1."""
    n_topics = len(TOPICS)
    item_topic = rng.integers(0, n_topics, size=n_items)
    popularity = rng.zipf(1.6, size=n_items).clip(max=50).astype(float)
    titles, genres, years = [], [], []
    for i, t in enumerate(item_topic):
        name, genre, mods = TOPICS[t]
        mod = mods[rng.integers(len(mods))]
        core = CORES[name][rng.integers(len(CORES[name]))]
        year = int(rng.integers(1970, 2020))
        titles.append(f"The {mod.title()} {core.title()} {i + 1} ({year})")
        extra = TOPICS[(t + 1 + rng.integers(n_topics - 1)) % n_topics][1]
        genres.append([genre] + ([extra] if rng.random() < 0.3 else []))
        years.append(year)
    movies = pd.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "title": titles,
            "name": [t.rsplit(" (", 1)[0] for t in titles],
            "year": pd.array(years, dtype="Int64"),
            "genres": genres,
        }
    )
    return item_topic, popularity, movies


def _make_impressions(rng, item_topic, popularity, n_users, n_days, slate_size, interests_per_user,
                      p_click_interest, p_click_other, share_interest_in_slate):
    """Users with planted interests, then their impressions and clicks day by day.

    Returns (user_id -> planted topic indices, impressions frame: user_id, item_id, timestamp,
    clicked)."""
    n_topics = len(TOPICS)
    item_ids = np.arange(1, len(item_topic) + 1)
    by_topic = [item_ids[item_topic == t] for t in range(n_topics)]
    pop_by_topic = [popularity[item_topic == t] / popularity[item_topic == t].sum() for t in range(n_topics)]
    lo, hi = interests_per_user
    interests = {}
    rows = []
    for u in range(1, n_users + 1):
        k = int(rng.integers(lo, hi + 1))
        mine = sorted(rng.choice(n_topics, size=min(k, n_topics), replace=False).tolist())
        interests[u] = mine
        days = np.sort(rng.choice(n_days, size=max(2, int(rng.integers(2, n_days + 1))), replace=False))
        seen: set[int] = set()
        for d in days:
            n_int = int(rng.binomial(slate_size, share_interest_in_slate))
            slate = []
            for _ in range(n_int):
                t = mine[rng.integers(len(mine))]
                slate.append(int(rng.choice(by_topic[t], p=pop_by_topic[t])) if len(by_topic[t]) else None)
            slate += rng.choice(item_ids, size=slate_size - n_int).tolist()
            slate = [i for i in dict.fromkeys(s for s in slate if s is not None) if i not in seen]
            for j, item in enumerate(slate):
                seen.add(item)
                hit = item_topic[item - 1] in mine
                clicked = rng.random() < (p_click_interest if hit else p_click_other)
                rows.append((u, item, T0 + int(d) * 86_400 + j * 60 + int(rng.integers(60)), clicked))
    return interests, pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "clicked"])


def _as_movielens(imp: pd.DataFrame, movies: pd.DataFrame, item_topic: np.ndarray) -> MovieLens:
    """The world in MovieLens's layout: a click is a 5.0 rating, an impression without one a
    1.0, and each item carries its topic's name as a tag."""
    ratings = pd.DataFrame(
        {
            "user_id": imp["user_id"].astype("int64"),
            "item_id": imp["item_id"].astype("int64"),
            "rating": np.where(imp["clicked"], 5.0, 1.0).astype("float32"),
            "timestamp": imp["timestamp"].astype("int64"),
        }
    ).sort_values(["user_id", "timestamp", "item_id"], ignore_index=True)
    n_items = len(movies)
    tags = pd.DataFrame(
        {
            "user_id": np.ones(n_items, dtype="int64"),
            "item_id": movies["item_id"].to_numpy(),
            "tag": [TOPICS[t][0] for t in item_topic],
            "timestamp": np.full(n_items, T0, dtype="int64"),
        }
    )
    return MovieLens(ratings=ratings, movies=movies, tags=tags, links=None, path=Path("<synthetic>"))
