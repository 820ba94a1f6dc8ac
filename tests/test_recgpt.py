"""RecGPT stand-ins: item tags, the tag-to-category map, interests and tag prediction."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from llmrec_lib import recgpt as R

MOVIES = pd.DataFrame({
    "item_id": [1, 2, 3, 4, 5],
    "title": ["Toy Story (1995)", "Jumanji (1995)", "Matrix, The (1999)", "Untitled", "Old (1915)"],
    "name": ["Toy Story", "Jumanji", "The Matrix", "Untitled", "Old"],
    "year": pd.array([1995, 1995, 1999, None, 1915], dtype="Int64"),
    "genres": [["Animation", "Comedy"], ["Fantasy", "IMAX"], ["Action", "Sci-Fi", "Thriller"], ["Drama"], []],
})


# --------------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag, cat", [
    ("animated comedy", "Comedy"),  # the head noun (last category word) decides
    ("comedy drama", "Drama"),
    ("sci-fi thriller", "Thriller"),
    ("90s war film", "War"),
    ("star wars saga", "Sci-Fi"),  # a longer phrase beats "war" at the same position
    ("classic film noir", "Film-Noir"),
    ("Romantic Comedies", "Comedy"),  # case and plurals
    ("spaghetti westerns", "Western"),
    ("comic book superhero", "Action"),
    ("dark family film", "Children"),
    ("slow-burn horror", "Horror"),
])
def test_tag_category_head_noun(tag, cat):
    assert R.tag_category(tag) == cat
    assert cat in R.TAG_CATEGORIES


@pytest.mark.parametrize("tag", ["", "something", "90s", "warden", "actionable", "scifiction"])
def test_tag_category_unmapped(tag):
    # Whole words only: "warden" is not War, "actionable" is not Action.
    assert R.tag_category(tag) == R.UNMAPPED


def test_tag_category_rejects_non_strings():
    with pytest.raises(TypeError, match="string"):
        R.tag_category(None)


def test_categories_are_the_genres_without_imax(ml):
    genres = {g for gs in ml.movies["genres"] for g in gs}
    assert set(R.TAG_CATEGORIES) == genres - {"IMAX"}
    assert len(set(R.TAG_CATEGORIES)) == len(R.TAG_CATEGORIES)
    # Every category's own core word and modifier map back to it.
    for c in R.TAG_CATEGORIES:
        assert R.tag_category(R.GENRE_CORE[c]) == c
        assert R.tag_categories(R.GENRE_MODIFIER[c]) == [c]


def test_tag_categories_lists_all_in_order():
    assert R.tag_categories("animated sci-fi comedy") == ["Animation", "Sci-Fi", "Comedy"]
    assert R.tag_categories("nothing here") == []


# --------------------------------------------------------------------------------------------
# Item tags
# --------------------------------------------------------------------------------------------


def test_decade_label():
    assert R.decade_label(1995) == "90s"
    assert R.decade_label(1920) == "20s"
    assert R.decade_label(2003) == "2000s"
    assert R.decade_label(1915) == "1910s"
    assert R.decade_label(pd.NA) is None and R.decade_label(None) is None


def test_item_tags_metadata_only():
    tags = R.item_tags(MOVIES)
    assert list(tags.index) == [1, 2, 3, 4, 5] and tags.name == "tags"
    assert tags[1] == ["90s animation", "comic animation"]
    assert tags[2] == ["90s fantasy"]  # IMAX is a format, not a category
    assert tags[3] == ["90s sci-fi", "action sci-fi", "suspense sci-fi"]
    assert tags[4] == []  # one genre and no year: no "modifier + core" phrase
    assert tags[5] == []  # no genres
    assert R.item_tags(MOVIES, max_tags=2)[3] == ["90s sci-fi", "action sci-fi"]


def test_item_tags_map_to_the_items_own_categories(ml):
    tags = R.item_tags(ml.movies, ml.tags)
    genres = ml.movies.set_index("item_id")["genres"]
    n = 0
    for item_id, phrases in tags.items():
        for p in phrases:
            assert R.tag_category(p) == R.item_category(genres[item_id]), (item_id, p)
            assert 2 <= len(p.split()) <= 5, p
            n += 1
    assert n > 2 * len(tags)  # several phrases per item on average
    assert tags.equals(R.item_tags(ml.movies, ml.tags))  # deterministic


def test_item_tags_user_tag_modifiers():
    t = pd.DataFrame({
        "user_id": [1, 2, 3, 1, 2, 1, 2, 3],
        "item_id": [3, 3, 3, 3, 3, 1, 1, 1],
        "tag": ["Cyberpunk", "cyberpunk", "cyberpunk", "mind-bending", "Mind-Bending", "quirky", "Quirky", "funny"],
        "timestamp": [0] * 8,
    })
    tags = R.item_tags(MOVIES, t)
    # "cyberpunk" names a category (Sci-Fi): not a modifier. "mind-bending" (2 users) is.
    assert tags[3][-1] == "mind-bending sci-fi" and not any("cyberpunk" in p for p in tags[3])
    assert tags[1][-1] == "quirky animation"  # "funny" has one user and names Comedy anyway
    assert R.item_tags(MOVIES, t, min_tag_users=3)[3] == R.item_tags(MOVIES)[3]
    assert R.item_tags(MOVIES, t, max_user_tags=0).equals(R.item_tags(MOVIES))


def test_training_tags_drop_the_future():
    train = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [4.0, 3.0, 5.0],
                          "timestamp": [10, 20, 5]})
    t = pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [1, 1, 1, 1],
                      "tag": ["a", "b", "c", "d"], "timestamp": [20, 21, 5, 1]})
    kept = R.training_tags(t, train)
    assert kept["tag"].tolist() == ["a", "c"]  # b: after user 1's last rating; d: unknown user


def test_item_tags_bad_input():
    with pytest.raises(ValueError, match="genres"):
        R.item_tags(MOVIES.drop(columns="genres"))
    with pytest.raises(ValueError, match="unknown genre"):
        R.item_tags(MOVIES.assign(genres=[["Cartoon"]] * 5))
    with pytest.raises(ValueError, match="tags must have"):
        R.item_tags(MOVIES, pd.DataFrame({"item_id": [1], "tag": ["x"]}))


# --------------------------------------------------------------------------------------------
# The predicted-tags artifact
# --------------------------------------------------------------------------------------------


def test_load_predicted_tags(tmp_path):
    p = tmp_path / "tags.jsonl"
    rows = [{"user_id": 1, "tags": ["90s comedy"], "source": "zero-shot"},
            {"user_id": 1, "tags": ["crime drama", "sci-fi action"], "source": "fine-tuned"},
            {"user_id": 2, "tags": [], "source": "fine-tuned"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert R.load_predicted_tags(p) == {1: ["crime drama", "sci-fi action"], 2: []}
    assert R.load_predicted_tags(p, source="zero-shot") == {1: ["90s comedy"]}
    with pytest.raises(ValueError, match="several sources"):
        R.load_predicted_tags(p, source=None)
    with pytest.raises(ValueError, match="no tags from source"):
        R.load_predicted_tags(p, source="teacher")
    with pytest.raises(FileNotFoundError, match="chapter 07"):
        R.load_predicted_tags(tmp_path / "missing.jsonl")
    p.write_text(json.dumps(rows[1]) + "\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match="appears twice"):
        R.load_predicted_tags(p)
    p.write_text('{"user_id": 1}\n')
    with pytest.raises(ValueError, match=":1 is not"):
        R.load_predicted_tags(p)
