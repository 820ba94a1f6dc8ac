"""The prompts of LLM_UI and LLM_IT, RecGPT style and sized for a 135M model (chapters 06, 07).

One format for every answer (:func:`format_answer`, a numbered list) and one parser
(:func:`parse_phrases`), so the teacher's targets, the fine-tuned model's answers and the
judges see the same text.
"""

from __future__ import annotations

from typing import Sequence

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
    """LLM_UI's prompt: the compressed history, then the task (a list of ``n`` phrases).

    Args:
        history_text: the user's compressed history (:mod:`recgpt.compression`); not empty.
        n: how many interest phrases to ask for.

    Returns:
        The prompt text.
    """
    if not history_text.strip():
        raise ValueError("history_text is empty: a user needs at least one rating to mine interests from")
    return INTEREST_PROMPT.format(history=history_text, n=n)


def tag_prompt(history_text: str, interests: Sequence[str], n: int = 6) -> str:
    """LLM_IT's prompt: compressed history, the mined interests, the task with its
    constraints (diverse, fresh).

    Args:
        history_text: the user's compressed history; not empty.
        interests: the interests mined by LLM_UI (empty: shown as "unknown").
        n: how many tags to ask for.

    Returns:
        The prompt text.
    """
    return TAG_PROMPT.format(history=history_text, interests=interests_shown(history_text, interests), n=n)


def interests_shown(history_text: str, interests: Sequence[str]) -> str:
    """How a tag prompt shows the mined interests, after checking it has a history to read.

    Both tag models (chapter 06's LLM_IT and chapter 07's second one) write their prompts
    through this, so they refuse an empty history and show missing interests the same way.

    Args:
        history_text: the user's compressed history; not empty.
        interests: the mined interests (empty: shown as "unknown").

    Returns:
        The interests joined by commas, or "unknown".
    """
    if not history_text.strip():
        raise ValueError("history_text is empty: a user needs at least one rating to predict tags from")
    return ", ".join(interests) if interests else "unknown"


def format_answer(phrases: Sequence[str]) -> str:
    r"""A target answer as the model should write it: a numbered list, one phrase a line.

    Args:
        phrases: the target phrases, in order.

    Returns:
        "1. first\n2. second...", the form :func:`parse_phrases` reads back.
    """
    return "\n".join(f"{i}. {p}" for i, p in enumerate(phrases, 1))


def parse_phrases(text: str, n: int):
    """Parse a generated list of phrases (:func:`generation.parse_list`, at most ``n``, at
    most 5 words each); returns the ParseResult.

    Args:
        text: the model's generated answer.
        n: the most phrases to keep.

    Returns:
        The :class:`generation.ParseResult` (its phrases and whether the answer parsed).
    """
    from llmrec_lib import generation

    return generation.parse_list(text, max_items=n, min_items=1, max_words=5)
