# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [raw]
# # ASSIGNMENT CONFIG
# name: 08_three_towers
# run_tests: false
# export_cell: false
# check_all_cell: false
# generate:
#   pdf: false
#   filtering: false

# %% [markdown]
# # Assignment 08 · Write a judge
#
# RecGPT filters every stage's output with judges. Chapter 08 judges the one-line explanations
# SmolLM2 wrote for (tag, movie) pairs: an explanation is *faithful* if it names no genre the
# movie lacks and no decade other than its own (`explanations.judge_faithful`). That judge misses a
# kind of error small models make: naming a wrong **year** ("a 1985 classic" for a 1999 film).
# Here you write that judge and measure what it changes on the book's committed table of
# explanations (`artifacts/recgpt/explanations.json`, generated in full mode; no model runs here).

# %%
import re

import numpy as np

from llmrec_lib import data
from llmrec_lib.recgpt import explanations

ml = data.load_movielens()
movies = ml.movies.set_index("item_id")
table = explanations.ExplanationTable.load(explanations.explanations_path())
print(len(table.rows), "explanations, e.g.:", table.rows["explanation"].iloc[0])

# %% [raw]
# # BEGIN QUESTION
# name: q1
# points: 3

# %% [markdown]
# **Question 1 · The year judge.** Write `years_named(text)`: the set of years (ints) a text
# names, where a year is a run of exactly four digits from 1900 to 2029 that is not part of a
# longer number and not followed by "s" ("1990s" is a decade, which the other judge handles).
# Then write `far_year(explanation, year, tolerance=5)`: True when the explanation names a year
# more than `tolerance` years away from the film's `year`.

# %% [raw]
# # BEGIN SOLUTION

# %%
def years_named(text):
    # BEGIN SOLUTION
    return {int(m) for m in re.findall(r"(?<!\d)(19\d\d|20[0-2]\d)(?![\ds])", str(text))}
    # END SOLUTION


def far_year(explanation, year, tolerance=5):
    # BEGIN SOLUTION
    return any(abs(y - int(year)) > tolerance for y in years_named(explanation))
    # END SOLUTION

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert years_named("The iconic Batman trilogy in 2005.") == {2005}
assert far_year("A 1985 classic.", 1999) is True and far_year("Batman in 2005.", 2005) is False

# %%
# HIDDEN
assert years_named("A 1990s gem") == set() and years_named("12005 or 1899 or 2031") == set()
assert years_named("from 1994 to 2003") == {1994, 2003}
assert far_year("made in 1994", 1999) is False and far_year("made in 1993", 1999) is True
assert far_year("no year at all", 1999) is False and far_year("in 2010", 2000, tolerance=10) is False

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION

# %% [raw]
# # BEGIN QUESTION
# name: q2
# points: 2

# %% [markdown]
# **Question 2 · A stricter verdict.** For every row of `table.rows`, the strict verdict is
# faithful by `explanations.judge_faithful(explanation, genres, year, title)` **and** not
# `far_year(explanation, year)`, with the movie's genres, year and title from `movies`. Store
# the share of faithful rows under the library's judge in `rate_library` and under the strict
# one in `rate_strict` (floats in [0, 1]), and the explanations the year judge alone rejects in
# the list `caught`.

# %% [raw]
# # BEGIN SOLUTION

# %%
# BEGIN SOLUTION
library_ok, strict_ok, caught = [], [], []
for item, text in zip(table.rows["item_id"], table.rows["explanation"]):
    m = movies.loc[int(item)]
    ok = explanations.judge_faithful(text, list(m["genres"]), m["year"], m["title"])[0]
    far = far_year(text, m["year"]) if m["year"] == m["year"] else False
    library_ok.append(ok)
    strict_ok.append(ok and not far)
    if ok and far:
        caught.append(text)
rate_library = float(np.mean(library_ok))
rate_strict = float(np.mean(strict_ok))
# END SOLUTION
print(f"faithful: library {rate_library:.3f}, strict {rate_strict:.3f}; the year judge alone caught {len(caught)}")

# %% [raw]
# # END SOLUTION

# %% [raw]
# # BEGIN TESTS

# %%
assert 0 <= rate_strict <= rate_library <= 1 and isinstance(caught, list)

# %%
# HIDDEN
lib, strict, extra = [], [], []
for item, text in zip(table.rows["item_id"], table.rows["explanation"]):
    m = movies.loc[int(item)]
    ok = explanations.judge_faithful(text, list(m["genres"]), m["year"], m["title"])[0]
    ys = {int(y) for y in re.findall(r"(?<!\d)(19\d\d|20[0-2]\d)(?![\ds])", str(text))}
    far = m["year"] == m["year"] and any(abs(y - int(m["year"])) > 5 for y in ys)
    lib.append(ok)
    strict.append(ok and not far)
    if ok and far:
        extra.append(text)
assert abs(rate_library - np.mean(lib)) < 1e-12 and abs(rate_strict - np.mean(strict)) < 1e-12
assert sorted(caught) == sorted(extra)

# %% [raw]
# # END TESTS

# %% [raw]
# # END QUESTION
