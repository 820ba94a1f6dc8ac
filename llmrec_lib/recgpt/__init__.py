"""Alibaba's RecGPT [recgpt2025] at pocket scale, chapters 06-08.

RecGPT puts LLMs in front of a retrieval model: ``LLM_UI`` mines a user's interests from
their (compressed) lifelong history, ``LLM_IT`` turns interests into *tags*, short
"modifier + core word" phrases that describe items the user may want next ("outdoor
waterproof hiking boots"), and a three-tower model retrieves items for those tags. The paper
measures tag prediction with HR@30: a tag-to-category model maps the 30 predicted tags to
categories, and a user is a hit when the category of the true next item is among them.

The package follows that chain, one module per job:

========================  =================================================  ==========
module                    what it holds                                      chapter
========================  =================================================  ==========
:mod:`.vocabulary`        categories, the genre lexicon, the decade rule,    07 (06, 08)
                          the tag-to-category map
:mod:`.tags`              item tags from metadata; the predicted-tags file   07, 08
:mod:`.compression`       reliable behaviours, compressed history text       06
:mod:`.teacher`           the rule-based teacher (interests, target tags)    06, 07
:mod:`.prompts`           the interest and tag prompts, answer format        06, 07
:mod:`.judges`            grounding, hallucination, predictiveness, HR@K     06, 07
:mod:`.pipeline`          the setting, SFT examples, the full-mode run       06, 07
:mod:`.selftrain`         one round of judge-filtered self-training          06
:mod:`.tagger`            the second LLM_IT (category summary prompt)        07
:mod:`.towers`            the three-tower retrieval model                    08
:mod:`.explanations`      LLM_RE explanations, their judges, the CLI         08
========================  =================================================  ==========

The first seven modules are light (pandas, no torch) and their public names are re-exported
here, so a chapter writes ``recgpt.item_tags(...)`` or ``recgpt.judge_interests(...)``. The
four model modules load torch or a chat model and are imported by name
(``from llmrec_lib.recgpt import tagger, towers``). The full-mode run is
``python -m llmrec_lib.recgpt full`` (see ``artifacts/recgpt/README.md``).
"""

from llmrec_lib.recgpt.compression import (
    DISLIKED_MAX,
    LIKED_MIN,
    compressed_history_lines,
    compressed_history_texts,
    compression_stats,
    history_prompt_text,
    raw_history_texts,
    raw_item_texts,
    reliable_behaviours,
    short_item_texts,
    time_buckets,
)
from llmrec_lib.recgpt.judges import (
    ItemFacts,
    answer_categories,
    category_interests,
    history_before,
    judge_interests,
    judge_tags,
    paired_rate_table,
    population_categories,
    rate_table,
    supports,
)
from llmrec_lib.recgpt.pipeline import (
    ADAPTER,
    GEN_MAX_NEW_TOKENS,
    GENERATIONS,
    HISTORY_BUDGET,
    META,
    N_INTERESTS,
    N_TAGS,
    NEXT_ITEMS,
    RECENT,
    Setting,
    adjust_sft_config,
    baseline_tag_rows,
    build_setting,
    default_sft_config,
    eval_users,
    generate_pipeline,
    generation_config,
    hardware,
    main,
    phrases_from_generations,
    read_generations,
    run_full,
    sft_examples,
    short_sha,
    split_examples,
    write_jsonl,
)
from llmrec_lib.recgpt.prompts import (
    INTEREST_PROMPT,
    TAG_PROMPT,
    format_answer,
    interest_prompt,
    interests_shown,
    parse_phrases,
    tag_prompt,
)
from llmrec_lib.recgpt.tags import (
    artifacts_dir,
    item_categories,
    item_category,
    item_tags,
    load_predicted_tags,
    predicted_tags_path,
)
from llmrec_lib.recgpt.teacher import (
    category_base_rates,
    category_scores,
    phrase_base_rates,
    popular_tags,
    recent_tags,
    target_tags,
    teacher_interests,
    weighted_tags,
)
from llmrec_lib.recgpt.vocabulary import (
    CATEGORY_KEYWORDS,
    DECADE_WORDS,
    GENRE_CORE,
    GENRE_MODIFIER,
    GENRE_WORDS,
    NON_CATEGORY_GENRES,
    TAG_CATEGORIES,
    UNMAPPED,
    decade_label,
    decade_mentions,
    mentioned_decades,
    mentioned_genres,
    phrase_decade,
    tag_categories,
    tag_category,
)

__all__ = [
    "TAG_CATEGORIES",
    "UNMAPPED",
    "NON_CATEGORY_GENRES",
    "GENRE_CORE",
    "GENRE_MODIFIER",
    "CATEGORY_KEYWORDS",
    "tag_categories",
    "tag_category",
    "GENRE_WORDS",
    "mentioned_genres",
    "decade_label",
    "DECADE_WORDS",
    "decade_mentions",
    "phrase_decade",
    "mentioned_decades",
    "item_categories",
    "item_category",
    "item_tags",
    "artifacts_dir",
    "predicted_tags_path",
    "load_predicted_tags",
    "LIKED_MIN",
    "DISLIKED_MAX",
    "reliable_behaviours",
    "raw_item_texts",
    "short_item_texts",
    "raw_history_texts",
    "time_buckets",
    "compressed_history_lines",
    "compressed_history_texts",
    "history_prompt_text",
    "compression_stats",
    "phrase_base_rates",
    "teacher_interests",
    "target_tags",
    "popular_tags",
    "recent_tags",
    "weighted_tags",
    "category_base_rates",
    "category_scores",
    "INTEREST_PROMPT",
    "TAG_PROMPT",
    "interest_prompt",
    "tag_prompt",
    "interests_shown",
    "format_answer",
    "parse_phrases",
    "ItemFacts",
    "supports",
    "answer_categories",
    "population_categories",
    "category_interests",
    "judge_interests",
    "judge_tags",
    "rate_table",
    "paired_rate_table",
    "history_before",
    "N_INTERESTS",
    "N_TAGS",
    "HISTORY_BUDGET",
    "RECENT",
    "NEXT_ITEMS",
    "GEN_MAX_NEW_TOKENS",
    "Setting",
    "build_setting",
    "sft_examples",
    "generate_pipeline",
    "short_sha",
    "eval_users",
    "ADAPTER",
    "GENERATIONS",
    "META",
    "split_examples",
    "default_sft_config",
    "generation_config",
    "write_jsonl",
    "read_generations",
    "phrases_from_generations",
    "run_full",
    "baseline_tag_rows",
    "adjust_sft_config",
    "hardware",
    "main",
]
