"""Judge-filtered self-training (llmrec_lib.recgpt.selftrain): the filter, the pick, the full round."""

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import recgpt as R
from llmrec_lib.recgpt import selftrain as S


def judged(rows):
    idx = pd.MultiIndex.from_tuples([r[:2] for r in rows], names=["prompt", "sample"])
    return pd.DataFrame([r[2:] for r in rows], index=idx,
                        columns=["n", "grounding", "hallucination", "precision_lift"])


def test_filter_needs_every_condition():
    j = judged([
        (0, 0, 5, 0.8, 0.0, 0.1),  # passes
        (0, 1, 4, 1.0, 0.0, 0.3),  # short answer
        (0, 2, 5, 1.0, 0.2, 0.3),  # one phrase backed by nothing
        (0, 3, 5, 0.4, 0.0, 0.3),  # too little grounding
        (1, 0, 5, 0.8, 0.0, 0.0),  # no lift (strictly above 0 needed)
        (1, 1, 5, 0.8, 0.0, np.nan),  # no judging window
    ])
    assert S.passes(j).tolist() == [True, False, False, False, False, False]
    with pytest.raises(ValueError, match="judge_interests"):
        S.passes(j.drop(columns="grounding"))


def test_pick_keeps_the_best_passing_sample_once_per_prompt():
    j = judged([(0, 0, 5, 0.6, 0.0, 0.1), (0, 1, 5, 0.8, 0.0, 0.2), (0, 2, 5, 0.8, 0.0, 0.2),
                (1, 0, 5, 0.2, 0.0, 0.5), (2, 3, 5, 1.0, 0.0, 0.05)])
    assert S.pick(j) == {0: 1, 2: 3}  # tie to the lower sample; prompt 1 keeps nothing


def test_judge_samples_read_each_cut(setting):
    users = np.sort(setting.split.train["user_id"].unique())[:5].tolist()
    from llmrec_lib.recgpt import tagger

    cuts = tagger.cut_points(setting, users=users)
    teacher = R.teacher_interests(cuts["shown_liked"].iloc[0], setting.itags, setting.base_rate)
    out = S.judge_samples({(0, 0): teacher, (0, 1): ["zzz nonsense"], (1, 0): []}, cuts, setting.facts,
                          ["Drama", "Comedy"])
    assert out.loc[(0, 0), "hallucination"] == 0  # the teacher names what the history holds
    assert out.loc[(0, 1), "hallucination"] == 1 and out.loc[(1, 0), "n"] == 0
    assert not S.passes(out).loc[(0, 1)]


def test_run_full_on_tiny_llama(setting, tmp_path, monkeypatch):
    import dataclasses

    from llmrec_lib import sft
    from llmrec_lib.recgpt import tagger

    users = np.sort(setting.split.train["user_id"].unique())[:6].tolist()
    tiny_cfg = {"batch_size": 2, "max_len": 2048, "save_every": 1, "steps": 2, "warmup": 0}
    cuts = tagger.cut_points(setting, users=users)
    pairs = [(R.interest_prompt(h), "1. drama") for h in cuts["history_text"][:2]]
    student = tmp_path / "student"
    sft.fit("tiny-llama", pairs, pairs, dataclasses.replace(S.sft_config(), **tiny_cfg), tmp_path / "w0",
            student, progress=False)
    test_users = [int(u) for u in setting.split.users("test")[:2]]
    kw = dict(out=tmp_path / "out", work=tmp_path / "work", backbone="tiny-llama", student=student,
              test_users=test_users, setting=setting, n_prompts=3, k_samples=2, example_users=users,
              sft_overrides=tiny_cfg, progress=False)
    with pytest.raises(RuntimeError, match="kept nothing"):  # a random model passes no judge
        S.run_full(command="test", **kw)
    monkeypatch.setattr(S, "passes", lambda j: pd.Series(True, index=j.index))  # mechanics only
    meta = S.run_full(command="test", **kw)
    assert meta["funnel"]["prompts"] == 3 and meta["funnel"]["generated"] == 6
    got_meta, samples, gens = S.load(tmp_path / "out")
    assert len(samples) == 6 and samples["kept"].sum() == meta["funnel"]["kept (one per prompt)"]
    assert set(gens["source"]) == set(S.ARMS) and len(gens) == 2 * len(S.ARMS)
    again = S.run_full(command="test", **kw)  # resumes: same samples, same answers
    assert S.load(tmp_path / "out")[1]["text"].tolist() == samples["text"].tolist()
    assert again["funnel"] == meta["funnel"]


def test_committed_round_matches_the_code(setting):
    """The committed round answered prompts this code still writes, and its samples pass or
    fail today's filter as recorded."""
    meta, samples, gens = S.load()
    inputs = setting.stage_inputs("test", users=meta["test_users"][:5])
    for arm in S.ARMS:
        rows = gens[(gens["source"] == arm) & gens["user_id"].isin(inputs["users"])]
        assert len(rows) == 5, arm
        for u, sha in zip(rows["user_id"], rows["prompt_sha"]):
            assert R.short_sha(R.interest_prompt(inputs["history_text"][int(u)], R.N_INTERESTS)) == sha
    judged = samples.set_index(["prompt_row", "sample"])
    assert (S.passes(judged) == judged["passed"]).all()
    assert meta["funnel"]["kept (one per prompt)"] == int(samples["kept"].sum())
