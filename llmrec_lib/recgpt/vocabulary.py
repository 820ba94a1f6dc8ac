"""RecGPT's vocabulary on MovieLens: categories, the genre lexicon and the tag-to-category map.

Chapter 07 measures tag prediction through this map (HR@K over categories); chapter 06's
judges and chapter 08's tag tower read the same words, so there is one lexicon for the
package.

* **Categories** (:data:`TAG_CATEGORIES`, :func:`tag_category`): the MovieLens genres (IMAX
  left out: it is a screen format, not a kind of film, and never an item's only genre).
* **The lexicon**: :data:`GENRE_CORE` (the noun a tag ends on), :data:`GENRE_MODIFIER` (the
  adjective that modifies another genre) and :data:`CATEGORY_KEYWORDS` (every word or short
  phrase that names a category).
* **The tag-to-category "model"** is a transparent keyword map: the *last* genre word of a
  phrase is its head noun in English ("animated comedy" is a comedy, "comedy drama" a drama).
* **Genre claims** (:data:`GENRE_WORDS`, :func:`mentioned_genres`): the narrower list of words
  that name a genre outright, which chapter 08's explanation judges check.
* **Decades**: :func:`decade_label` writes them ("90s", "2000s"), and one rule reads them
  (:func:`decade_mentions`), for tags and interests (:func:`phrase_decade`, chapter 06's
  judges) and for explanations (:func:`mentioned_decades`, chapter 08's).
"""

from __future__ import annotations

import functools
import re

import pandas as pd

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
    """Every category a phrase mentions, in order of appearance (repeats removed).

    Args:
        tag: a tag or interest phrase.

    Returns:
        The categories it names, first mention first (empty: none).
    """
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

    Args:
        tag: a tag or interest phrase.

    Returns:
        The category of the phrase's last category word, or :data:`UNMAPPED`.
    """
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a string, got {type(tag).__name__}")
    return _tag_category(tag)


@functools.lru_cache(maxsize=1 << 16)
def _tag_category(tag: str) -> str:
    """:func:`tag_category` without the type check, memoised: the tag rules call it for
    every phrase of every liked item, and a catalogue has a few thousand phrases."""
    last = None
    for m in _KEYWORDS_RE.finditer(tag.casefold()):
        last = m
    return _KEYWORD_OWNER[last.group(1)] if last is not None else UNMAPPED


#: Words that name a genre outright, and the MovieLens genre each one names: what the
#: explanation judges (chapter 08, :mod:`llmrec_lib.recgpt.explanations`) read as a claim.
#: Narrower than :data:`CATEGORY_KEYWORDS` on purpose. The keywords answer "what is this tag
#: about", so a topic word counts ("space opera" is Sci-Fi, "love story" Romance); a reason
#: that says "a love story" about a drama is not claiming the film is a romance, nor is a
#: reason naming "Star Wars" claiming Sci-Fi. Both tables live here so that no word names two
#: genres (tests/test_recgpt.py checks it). Judging the explanation table committed at the time
#: (103 rows, b = 0.8) with the keywords instead moved its faithful rate from 0.563 to 0.592
#: and its grounded rate from 0.476 to 0.515 (issue 15, measured): the keywords let topic
#: words pass as genre claims, so the judges keep their own words.
GENRE_WORDS = {
    "action": "Action", "adventure": "Adventure", "adventurous": "Adventure", "animated": "Animation",
    "animation": "Animation", "cartoon": "Animation", "children": "Children", "kids": "Children",
    "family": "Children", "comedy": "Comedy", "comedic": "Comedy", "funny": "Comedy", "comedies": "Comedy",
    "crime": "Crime", "criminal": "Crime", "documentary": "Documentary", "drama": "Drama", "dramatic": "Drama",
    "fantasy": "Fantasy", "film-noir": "Film-Noir", "noir": "Film-Noir", "horror": "Horror", "scary": "Horror",
    "musical": "Musical", "mystery": "Mystery", "mysterious": "Mystery", "romance": "Romance", "romantic": "Romance",
    "sci-fi": "Sci-Fi", "science fiction": "Sci-Fi", "sci fi": "Sci-Fi", "thriller": "Thriller", "suspense": "Thriller",
    "war": "War", "western": "Western", "imax": "IMAX",
}
_GENRE_RE = re.compile(r"(?<![a-z])(" + "|".join(sorted((re.escape(w) for w in GENRE_WORDS), key=len, reverse=True)) + r")(?![a-z])")


def mentioned_genres(text: str) -> set[str]:
    """MovieLens genres the text names (through :data:`GENRE_WORDS`).

    Args:
        text: any text (an explanation, a phrase); not a string is read as ``str(text)``.

    Returns:
        The genres named, as MovieLens spells them.
    """
    return {GENRE_WORDS[m] for m in _GENRE_RE.findall(str(text).lower())}


# --------------------------------------------------------------------------------------------
# Decades: one rule for item tags, mined interests, predicted tags and explanations
# --------------------------------------------------------------------------------------------


def decade_label(year) -> str | None:
    """1995 -> "90s", 2003 -> "2000s", 1915 -> "1910s"; None/NA -> None.

    Two-digit labels only for 1920-1999, where they are unambiguous on this catalogue.

    Args:
        year: a year (int, float or NA).

    Returns:
        The decade's label, or None without a year.
    """
    if year is None or pd.isna(year):
        return None
    decade = int(year) // 10 * 10
    return f"{decade % 100:02d}s" if 1920 <= decade < 2000 else f"{decade}s"


#: Decades written as words ("the nineties").
DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                "seventies": 1970, "eighties": 1980, "nineties": 1990}
#: A decade ("1990s", "90s", "'90s"), a year from 1900 to 2099 ("1994") or a decade word;
#: matched on the casefolded text.
_DECADE_RE = re.compile(r"(?<![\w'])'?((?:1[89]|20)?\d0)s(?![a-z])"
                        r"|(?<!\d)((?:19|20)\d\d)(?!\d)"
                        r"|(?<![a-z])(" + "|".join(DECADE_WORDS) + r")(?![a-z])")


def decade_mentions(text: str, *, years: bool = True) -> list[int]:
    """The decades ``text`` names, in order, each as its first year (1990).

    "1990s", "90s" and "'90s" name the 1990s; a two-digit decade from "20s" up is in the 1900s
    and below it in the 2000s ("00s", "10s"), as :func:`decade_label` writes them (the catalogue
    ends in 2018, so "20s" is the 1920s); "the nineties" names the 1990s. With ``years`` a
    four-digit year counts too ("a 1994 classic" names the 1990s).

    Phrases (tags and interests) are read with ``years=False``: a year there is mostly a date
    the model copied from the history ("2015-10-24 liked"), not what the film is. Explanations are
    read with years: "a 1994 classic" is a claim the faithful judge must check.

    This one rule replaced two (issue 15), the interest judges' and the explanation judges'. It
    reads the same decades as the rule each used on every committed text: 996 phrases (mined
    interests, predicted tags, self-training samples, item tags) and 9,948 explanation texts
    (the 103 explanations, their raw answers, every title). One reading changed where nothing
    committed used it: the explanation judges read "20s" as the 2020s, a decade with no film in
    the catalogue; here it is the 1920s, as :func:`decade_label` writes it.

    Args:
        text: the text to read.
        years: count four-digit years as naming their decade.

    Returns:
        The decades named, in order of appearance (repeats kept).
    """
    out = []
    for m in _DECADE_RE.finditer(str(text).casefold()):
        decade, year, word = m.groups()
        if decade:
            d = int(decade)
            out.append(d if len(decade) == 4 else (1900 + d if d >= 20 else 2000 + d))
        elif year and years:
            out.append(int(year) // 10 * 10)
        elif word:
            out.append(DECADE_WORDS[word])
    return out


def phrase_decade(phrase: str) -> str | None:
    """The decade a tag or interest phrase names, as :func:`decade_label` writes it ("90s",
    "1990s" and "'90s" -> "90s"; "00s" -> "2000s"), or None (years are dates here: see
    :func:`decade_mentions`).

    Args:
        phrase: a tag or interest phrase.

    Returns:
        The first decade it names as a label, or None.
    """
    found = decade_mentions(phrase, years=False)
    return decade_label(found[0]) if found else None


def mentioned_decades(text: str) -> set[int]:
    """Decades an explanation names: "1990s", "a 1994 film", "90s", "'80s", "nineties".

    Args:
        text: an explanation.

    Returns:
        The decades named, each as its first year (1990), years included.
    """
    return set(decade_mentions(text, years=True))
