"""The second LLM_IT (llmrec_lib.recgpt.tagger): targets, prompt, post-processing, the full run."""

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import recgpt as R
from llmrec_lib.recgpt import tagger as T

ITAGS = pd.Series({1: ["90s drama"], 2: ["80s comedy"], 3: ["crime drama"], 4: ["2000s horror"],
                   5: ["animated comedy"], 6: ["90s sci-fi"], 7: []}, dtype=object)


def test_category_counts_order_by_count_then_recency():
    counts = T.category_counts([1, 2, 3, 5, 4], ITAGS)
    assert counts == [("Comedy", 2), ("Drama", 2), ("Horror", 1)]  # comedy liked more recently
    # here the rule agrees (its tie rule, summed recency, differs only on other ties)
    rule = R.recent_tags([1, 2, 3, 5, 4], ITAGS, n=3)
    assert [R.tag_category(t) for t in rule] == [c for c, _ in counts]
    assert T.category_summary([1, 2, 3, 5, 4], ITAGS) == "comedy 2, drama 2, horror 1"
    assert T.category_summary([7], ITAGS) == "none"
    assert T.category_counts([1, 2, 3], ITAGS, last=1) == [("Drama", 1)]


def test_next_tags_one_per_category_then_history_backfill():
    t = T.next_tags([4, 4, 6, 3], [1, 2, 5], ITAGS, n=4)
    cats = [R.tag_category(x) for x in t]
    assert cats[:3] == ["Horror", "Drama", "Sci-Fi"]  # drama before sci-fi: history knows drama
    assert cats[3] == "Comedy" and len(set(cats)) == len(cats)  # backfill, never a repeat
    assert t[1] == "crime drama"  # the next items' own phrase wins over the history's
    assert T.next_tags([], [], ITAGS) == []


def test_one_per_category_is_a_separate_step():
    out = T.one_per_category(["90s drama", "crime drama", "cozy vibes", "80s comedy"],
                             ["2000s horror", "animated comedy", "90s sci-fi"], n=4)
    assert out == ["90s drama", "80s comedy", "2000s horror", "90s sci-fi"]


def test_prompt_carries_summary_and_interests():
    p = T.tag_prompt("Toy Story '95 (animation)", "drama 3, comedy 1", ["90s drama"])
    assert "drama 3, comedy 1" in p and "90s drama" in p and "one tag per kind" in p
    with pytest.raises(ValueError, match="empty"):
        T.tag_prompt("  ", "none", [])


def test_cut_points_use_training_data_only(setting):
    users = np.sort(setting.split.train["user_id"].unique())[:6].tolist()
    cuts = T.cut_points(setting, users=users)
    last_train = setting.split.train.groupby("user_id")["timestamp"].max()
    assert len(cuts) and (cuts["cut"] <= cuts["user_id"].map(last_train)).all()
    assert (cuts["next_items"].map(len) == T.HORIZON).all()
    assert cuts.equals(T.cut_points(setting, users=users))


def test_run_full_on_tiny_llama(setting, tmp_path):
    kw = dict(n_users={"test": 3, "valid": 2}, steps=2, out=tmp_path / "out", work=tmp_path / "work",
              backbone="tiny-llama", ui_adapter="", example_users=np.sort(
                  setting.split.train["user_id"].unique())[:4].tolist(), setting=setting,
              sft_overrides={"batch_size": 2, "max_len": 2048, "save_every": 1}, progress=False)
    meta = T.run_full(command="test", **kw)
    assert meta["users"] == {"test": 3, "valid": 2}
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    tags = T.load_tags("test", tmp_path / "out" / "tags.jsonl")
    assert len(tags) == 3 and set(tags) <= set(int(u) for u in setting.split.users("test"))
    first = T.load_tags("valid", tmp_path / "out" / "tags.jsonl", field="text")
    again = T.run_full(command="test", **kw)  # resumes: nothing trained or generated anew
    assert T.load_tags("valid", tmp_path / "out" / "tags.jsonl", field="text") == first
    ints = T.load_tags("test", tmp_path / "out" / "tags.jsonl", field="interests")
    assert set(ints) == set(tags) and all(isinstance(v, list) for v in ints.values())
    assert again["timings_s"]["sft"] < meta["timings_s"]["sft"] + 60
    with pytest.raises(ValueError, match="no tags"):
        T.load_tags("train", tmp_path / "out" / "tags.jsonl")


@pytest.mark.parametrize("variant, folder", [(v, "") for v in sorted(T.VARIANTS)]
                         + [("v3", T.CONSTRAINED), ("v3", T.RANKED), ("v4", T.CONSTRAINED),
                            ("v5", T.CONSTRAINED)])
def test_committed_tags_match_the_code(setting, variant, folder):
    """The committed answers (and the constrained and ranked ones) came from prompts this code writes."""
    import json

    var = T.VARIANTS[variant]
    path = R.artifacts_dir() / var.out / folder / "tags.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    for stage in ("test", "valid"):
        inputs = setting.stage_inputs(stage)
        some = [r for r in rows if r["stage"] == stage][:5]
        assert some, stage
        for r in some:
            u = r["user_id"]
            summary, recent = T._summaries(inputs["liked"][u], setting.itags, var, T._base_rates(setting))
            p = T.tag_prompt(inputs["history_text"][u], summary, r["interests"], **recent)
            assert R.short_sha(p) == r["prompt_sha"], (stage, u)


def test_v3_backfill_is_chapter_07s_validation_choice():
    import json

    from llmrec_lib import config

    rec = json.loads((config.PROJECT_ROOT / "results" / "full" / "ch07.json").read_text())
    assert rec["llm_it_v2"]["tuned_rule"]["chosen"] == T.TUNED_RULE


def test_v3_prompt_and_targets():
    p = T.tag_prompt("Toy Story '95 (animation)", "drama 3, comedy 1", ["90s drama"], recent="comedy 1")
    assert f"last {T.RECENT_LAST} likes: comedy 1.\n" in p and "drama 3, comedy 1" in p
    assert "last 10 likes" not in T.tag_prompt("Toy Story '95 (animation)", "drama 3", [])
    # ties and backfill follow the given order; a category no item carries is named
    t = T.next_tags([4, 6], [1, 2, 5], ITAGS, n=4, order=["Sci-Fi", "Western", "Comedy", "Horror"])
    assert [R.tag_category(x) for x in t] == ["Sci-Fi", "Horror", "Western", "Comedy"]
    assert t[2] == "western"
    rates = pd.Series({"Drama": 0.6, "Comedy": 0.4})
    # two comedies and a drama (weights 1.97 vs .95), but the prior at weight 2 adds 2 x 2.92
    # x .6 to drama and 2 x 2.92 x .4 to comedy: the population wins by a hair
    assert T.backfill_order([1, 2, 5], ITAGS, rates) == ["Drama", "Comedy"]
    with pytest.raises(ValueError, match="variant"):
        T.run_full(variant="v9")


def test_v5_is_v4_with_the_tuned_rules_order_in_its_prompt():
    import dataclasses

    v4, v5 = T.VARIANTS["v4"], T.VARIANTS["v5"]
    assert dataclasses.replace(v5, name="v4", out="tagger-v4", weighted_line=False, max_len=512) == v4
    rates = pd.Series({"Drama": 0.6, "Comedy": 0.4})
    summary, kw = T._summaries([1, 2, 5], ITAGS, v5, rates)
    assert kw["weighted"] == "drama, comedy"  # backfill_order's order (see the v3 test)
    p = T.tag_prompt("Toy Story '95 (animation)", summary, ["90s drama"], **kw)
    assert "common kinds less): drama, comedy.\nTheir interests" in p
    # v4's prompt is v5's without that line, byte for byte
    _, kw4 = T._summaries([1, 2, 5], ITAGS, v4, rates)
    line = p[p.index("Kinds they lean to"):p.index("Their interests")]
    assert T.tag_prompt("Toy Story '95 (animation)", summary, ["90s drama"], **kw4) == p.replace(line, "")
    with pytest.raises(ValueError, match="base rates"):
        T._summaries([1, 2, 5], ITAGS, v5)


def test_v4_is_v3_with_more_data():
    import dataclasses

    v3, v4 = T.VARIANTS["v3"], T.VARIANTS["v4"]
    same = {"per_user", "steps", "gen_batch", "name", "out"}
    assert {f.name: getattr(v3, f.name) for f in dataclasses.fields(v3) if f.name not in same} == \
        {f.name: getattr(v4, f.name) for f in dataclasses.fields(v4) if f.name not in same}
    assert v4.per_user == 3 * v3.per_user and T.default_sft_config().steps == 150
    # the same epochs: 150 steps of 8 over 744 prompts, 420 over 2,099 (1.61 and 1.60)
    assert abs(v4.steps / 2099 - 150 / 744) < 0.002


def test_one_tag_per_category_refuses_a_named_category_only():
    from llmrec_lib import backbones

    c = T.OneTagPerCategory(backbones.build_byte_tokenizer())  # one token per byte
    tok = c.tokenizer

    def ok(prefix: str, char: str) -> bool:
        return c.allows(tok(prefix, add_special_tokens=False)["input_ids"], tok.convert_tokens_to_ids(char))

    assert ok("1. 90s war fil", "m")  # the first line is free
    done = "1. 90s war film\n2. 90s "
    assert not ok(done + "wa", "r")  # completes War's keyword
    assert ok(done + "wa", "t") and ok(done + "w", "a")  # too short to tell, or not War
    assert not ok("1. 90s thriller\n2. 90s th", "r")  # "thr" can only become Thriller's words
    assert ok("1. 90s drama\n2. 90s dr", "a")  # "dra" may still be Fantasy's "dragon"
    assert ok("1. 90s romance\n2. 90s ro", "m")  # "rom" may still be Comedy's "rom-com"
    assert ok("1. 90s romance\n2. 90s mystery\n3. 90s my", "s") is False
    assert ok(done + "comed", "y") and ok(done, "\n")  # other categories and line ends stay free


def test_retag_keeps_the_prompts_and_changes_the_decoding(setting, tmp_path):
    kw = dict(n_users={"test": 3, "valid": 2}, backbone="tiny-llama", setting=setting,
              out=tmp_path / "out", work=tmp_path / "work", ui_adapter="", steps=2,
              sft_overrides={"batch_size": 2, "max_len": 2048, "save_every": 1}, progress=False,
              example_users=np.sort(setting.split.train["user_id"].unique())[:4].tolist(), variant="v3")
    T.run_full(command="test", **kw)
    meta = T.retag("v3", n_users=kw["n_users"], source=tmp_path / "out", work=tmp_path / "work",
                   backbone="tiny-llama", setting=setting, progress=False)
    assert meta["users"] == {"test": 3, "valid": 2}
    assert meta["generation_config"]["constraint"] == T.CONSTRAINT
    import json

    old = [json.loads(x) for x in (tmp_path / "out" / "tags.jsonl").read_text().splitlines()]
    new = [json.loads(x) for x in (tmp_path / "out" / "constrained" / "tags.jsonl").read_text().splitlines()]
    assert [(r["user_id"], r["prompt_sha"], r["interests"]) for r in new] == \
        [(r["user_id"], r["prompt_sha"], r["interests"]) for r in old]
    with pytest.raises(FileNotFoundError, match="full --variant v3"):
        T.retag("v3", source=tmp_path / "missing", setting=setting)


def test_after_modifier_marks_the_step_before_the_first_tags_head():
    assert T.after_modifier("1. 90s", " crime")
    assert T.after_modifier("1. dramatic", " romance")
    assert not T.after_modifier("1. 90s", "s")  # the word goes on ("90ss")
    assert not T.after_modifier("1. 9", "0") and not T.after_modifier("1.", " 90")
    assert not T.after_modifier("1. 90s crime", " film")  # the head has started


def test_ranked_answer_orders_categories_by_the_models_probability():
    logp = np.full(len(R.TAG_CATEGORIES), -9.0)
    want = ["Comedy", "Western", "Crime", "Drama", "War", "Sci-Fi"]
    for k, c in enumerate(want):
        logp[R.TAG_CATEGORIES.index(c)] = -1.0 - k
    tags, per_cat = T.ranked_answer("1. 90s", logp)
    assert [R.tag_category(t) for t in tags] == want
    assert tags[2] == "90s crime film" and per_cat["Comedy"] == -1.0
    with pytest.raises(ValueError, match="one word"):
        T.ranked_answer("1. 90s crime", logp)
    with pytest.raises(ValueError, match="one score per category"):
        T.ranked_answer("1. 90s", logp[:3])


def test_core_tokens_refuse_a_tokenizer_that_cannot_tell_cores_apart():
    from llmrec_lib import backbones

    with pytest.raises(ValueError, match="share their first token"):
        T.core_tokens(backbones.build_byte_tokenizer())  # every core starts with the byte " "

    class Words:  # one token per word
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [hash(w) % 10**6 for w in text.split()]}

    assert len(set(T.core_tokens(Words()))) == len(R.TAG_CATEGORIES)


def test_rank_keeps_the_variants_prompts_and_counts_unread_answers(setting, tmp_path, monkeypatch):
    kw = dict(n_users={"test": 3, "valid": 2}, backbone="tiny-llama", setting=setting,
              out=tmp_path / "out", work=tmp_path / "work", ui_adapter="", steps=2,
              sft_overrides={"batch_size": 2, "max_len": 2048, "save_every": 1}, progress=False,
              example_users=np.sort(setting.split.train["user_id"].unique())[:4].tolist(), variant="v3")
    T.run_full(command="test", **kw)
    # the byte tokenizer cannot tell the cores apart (see above): read 18 arbitrary bytes instead
    monkeypatch.setattr(T, "core_tokens", lambda tok: list(range(65, 65 + len(R.TAG_CATEGORIES))))
    meta = T.rank("v3", n_users=kw["n_users"], source=tmp_path / "out", backbone="tiny-llama",
                  setting=setting, progress=False)
    import json

    old = [json.loads(x) for x in (tmp_path / "out" / "tags.jsonl").read_text().splitlines()]
    new = [json.loads(x) for x in (tmp_path / "out" / T.RANKED / "tags.jsonl").read_text().splitlines()]
    assert [(r["user_id"], r["prompt_sha"], r["interests"]) for r in new] == \
        [(r["user_id"], r["prompt_sha"], r["interests"]) for r in old]
    # an untrained tiny model never writes "1. <word> ": every answer is unread, and says so
    assert meta["unread"] == sum(not r["ok"] for r in new) and all(r["tags"] == [] for r in new if not r["ok"])
    with pytest.raises(FileNotFoundError, match="full --variant v3"):
        T.rank("v3", source=tmp_path / "missing", setting=setting)


def test_states_read_the_runs_own_prompts_and_resume(setting, tmp_path):
    kw = dict(n_users={"test": 3, "valid": 2}, backbone="tiny-llama", setting=setting, work=tmp_path / "work",
              ui_adapter="", progress=False,
              example_users=np.sort(setting.split.train["user_id"].unique())[:4].tolist())
    T.run_full(command="test", out=tmp_path / "out", steps=2, variant="v5",
               sft_overrides={"batch_size": 2, "max_len": 2048, "save_every": 1}, **kw)
    meta = T.states("v5", source=tmp_path / "out", command="test", **kw)
    got = T.load_states("v5", source=tmp_path / "out")
    import json

    rows = [json.loads(x) for x in (tmp_path / "out" / "tags.jsonl").read_text().splitlines()]
    for stage in ("test", "valid"):  # the very prompts the run answered, user by user
        mine = [r for r in rows if r["stage"] == stage]
        assert got[f"{stage}_users"].tolist() == [r["user_id"] for r in mine]
        assert got[f"{stage}_prompt_sha"].tolist() == [r["prompt_sha"] for r in mine]
    cuts = T.cut_points(setting, per_user=T.VARIANTS["v5"].per_user, users=kw["example_users"])
    assert got["examples_users"].tolist() == cuts["user_id"].tolist()
    assert got["examples_cuts"].tolist() == cuts["cut"].tolist()
    assert got["examples_states"].dtype == np.float32 and np.isfinite(got["examples_states"]).all()
    assert meta["rows"] == {"examples": len(cuts), "test": 3, "valid": 2}
    base = T.states("v5", tuned=False, source=tmp_path / "out", **kw)
    assert base["read_through"] == "base"
    assert not np.array_equal(T.load_states("v5", "base", tmp_path / "out")["test_states"], got["test_states"])
    T.states("v5", source=tmp_path / "out", **kw)  # resumes from the cached parts: the same states
    assert np.array_equal(T.load_states("v5", source=tmp_path / "out")["test_states"], got["test_states"])
    with pytest.raises(FileNotFoundError, match="states --variant v5 --base"):
        T.load_states("v5", "base", tmp_path / "missing")


@pytest.mark.parametrize("which", ["tuned", "base"])
def test_committed_states_read_the_committed_prompts(setting, which):
    """Chapter 07's ranking heads read states of v5's own prompts: its test and validation
    answers' prompts, and its training cut points."""
    import json

    got = T.load_states("v5", which)
    rows = [json.loads(x) for x in (R.artifacts_dir() / "tagger-v5" / "tags.jsonl").read_text().splitlines()]
    for stage in ("test", "valid"):
        mine = [r for r in rows if r["stage"] == stage]
        assert got[f"{stage}_users"].tolist() == [r["user_id"] for r in mine]
        assert got[f"{stage}_prompt_sha"].tolist() == [r["prompt_sha"] for r in mine]
        assert got[f"{stage}_states"].shape == (len(mine), 576)
    cuts = T.cut_points(setting, per_user=T.VARIANTS["v5"].per_user, seed=0)
    assert got["examples_users"].tolist() == cuts["user_id"].tolist()
    assert got["examples_cuts"].tolist() == cuts["cut"].tolist()
