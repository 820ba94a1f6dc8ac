"""Judges: measured rates standing in for RecGPT's LLM judges (chapters 06 and 07).

RecGPT checks each LLM's output with LLM judges. Here every judge is a rule whose rate can be
measured and bootstrapped: :func:`judge_interests` (chapter 06: grounding in the history,
hallucination, recall and precision of what the user likes next, each against a population
baseline, and personalisation), :func:`judge_tags` (chapter 07: HR@K of predicted tags
through the tag-to-category map), with :class:`ItemFacts` (what each item is, in the
vocabulary's words) and :func:`supports` (does an item back a phrase). :func:`rate_table` and
:func:`paired_rate_table` turn judged rows into the tables the chapters print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import data
from llmrec_lib.recgpt.tags import item_categories, item_category
from llmrec_lib.recgpt.vocabulary import (
    GENRE_CORE,
    UNMAPPED,
    decade_label,
    phrase_decade,
    tag_categories,
    tag_category,
)

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
        """The facts of every item the judges check phrases against: its categories, decade,
        name and tag words, and its one category (:func:`item_category`).
        """
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


def supports(phrase: str, item: int, facts: ItemFacts) -> bool:
    """Does ``item`` have what ``phrase`` says? Every category the phrase names is one of the
    item's, and its decade (if it names one) is the item's; a phrase naming neither is
    supported when it shares a content word with the item's name or user tags.

    Args:
        phrase: a tag or interest phrase.
        item: an item id.
        facts: the catalogue's facts (:meth:`ItemFacts.build`).

    Returns:
        True when the item has what the phrase names.
    """
    cats = tag_categories(phrase)
    dec = phrase_decade(phrase)
    if cats or dec:
        return set(cats) <= facts.cats.get(item, frozenset()) and (dec is None or facts.decade.get(item) == dec)
    words = _content_words(phrase.casefold())
    return bool(words & facts.words.get(item, frozenset()))


def answer_categories(phrases: Sequence[str]) -> set[str]:
    """The categories an answer names: the head categories (:func:`tag_category`) of its
    phrases, unmapped phrases left out.

    Args:
        phrases: an answer's phrases.

    Returns:
        The set of categories named.
    """
    return {tag_category(p) for p in phrases} - {UNMAPPED}


def population_categories(liked_items: Iterable[int], facts: ItemFacts, n: int = 5) -> list[str]:
    """The population's modal answer: the ``n`` categories most often the category
    (:func:`item_category`) of a liked film, each like counted once (ties alphabetically).
    Pass every like of the population (e.g. the training positives' item ids).

    Args:
        liked_items: item ids, one per like.
        facts: the catalogue's facts.
        n: how many categories to return.

    Returns:
        Up to ``n`` categories, commonest first.
    """
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
    answer* everyone receives.

    Args:
        items: liked item ids.
        facts: the catalogue's facts.
        n: how many interests to return.

    Returns:
        Up to ``n`` phrases, commonest category first.
    """
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

    Args:
        interests: user -> phrases; the users judged are those of ``interests``.
        history: user -> liked item ids (what the model could see).
        future: user -> liked item ids of the judging window.
        facts: the catalogue's facts (:meth:`ItemFacts.build`).
        n_requested: how many interests were asked for.
        min_support: the history films a phrase needs to count as supported.
        population: user -> liked history items, the base rates' population.
        population_future: user -> judging-window items, the lifts' population.
        population_answer: the modal answer ``P`` (categories).

    Returns:
        One row per user, one column per judge (and ``n``, the phrases parsed).
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

    Args:
        tags: user -> predicted tags, best first.
        future: user -> liked item ids of the judging window.
        recent: user -> item ids the user rated recently.
        facts: the catalogue's facts.
        k: how many of the first tags count for HR@k.
        n_requested: how many tags were asked for (diversity's denominator).

    Returns:
        One row per user of ``tags``, one column per rate.
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
    Users whose rate is undefined (NaN: e.g. no future positives) are left out.

    Args:
        judged: system name -> its judge table (one row per user).
        columns: the judge columns to summarise (default: all but ``n``).
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        The long table, one row per (system, judge).
    """
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
    answered the same users: a difference interval that excludes 0.

    Args:
        judged: system name -> its judge table (one row per user).
        reference: the system every other is compared with.
        columns: the judge columns to compare (default: all but ``n``).
        n_boot: bootstrap resamples.
        seed: the bootstrap's seed.

    Returns:
        The long table, one row per (system, judge), the reference left out.
    """
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
    ``history_before(h, window_start - k weeks)`` instead of the whole history ``h``.

    Args:
        ratings: ratings with user_id and timestamp.
        cutoff: user -> the first timestamp left out.

    Returns:
        The earlier ratings, index reset.
    """
    data.require_columns(ratings, ("user_id", "timestamp"), "ratings")
    limit = ratings["user_id"].map(cutoff)
    return ratings[limit.notna() & (ratings["timestamp"] < limit)].reset_index(drop=True)
