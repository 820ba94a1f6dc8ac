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
"""

from __future__ import annotations

import re

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
