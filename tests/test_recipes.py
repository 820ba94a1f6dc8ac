"""The committed adapters match the code that loads them, and each says how it was made."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from llmrec_lib import recipes, text
from llmrec_lib.encoders import DualEncoder, EncoderConfig
from llmrec_lib.train import TrainConfig

PUBLISHED = sorted(p.name for p in recipes.ARTIFACTS.glob("*") if (p / "encoder.json").is_file())
PUBLISHED_DIR = recipes.ARTIFACTS


def test_every_recipe_has_a_committed_adapter():
    assert set(recipes.RECIPES) <= set(PUBLISHED), "run: python -m llmrec_lib.recipes train NAME --mode full"


@pytest.mark.parametrize("name", PUBLISHED)
def test_adapter_config_is_the_current_recipe(name):
    info = json.loads((recipes.ARTIFACTS / name / "encoder.json").read_text())
    enc, tr = recipes.recipe(name, "full")
    assert EncoderConfig.from_dict(info["encoder"]) == enc, "the recipe changed: retrain and commit the adapter"
    saved = dict(info["meta"]["train_config"])
    want = json.loads(json.dumps(tr.to_dict()))
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    # settings added after an adapter was trained must sit at defaults that reproduce it
    assert all(want[k] == defaults[k] for k in want if k not in saved), "the recipe changed: retrain"
    assert saved == {k: v for k, v in want.items() if k in saved} | {"eval_every": saved["eval_every"]}
    stopped_early = tr.patience and info["meta"]["steps_done"] < tr.steps
    assert info["meta"]["steps_done"] == tr.steps or stopped_early
    assert info["meta"]["command"].startswith(f"python -m llmrec_lib.recipes train {name} --mode full")
    size = sum(f.stat().st_size for f in (recipes.ARTIFACTS / name).iterdir())
    assert size < 5 * 2**20  # the budget is 20 MB for all adapters together


@pytest.mark.bundled
@pytest.mark.parametrize("name", PUBLISHED)
def test_adapter_loads_into_the_current_model(name):
    pytest.importorskip("gguf")
    enc, _ = recipes.recipe(name, "full")
    model = DualEncoder(enc)
    fresh = model.adapter_state()
    with safe_open(str(recipes.ARTIFACTS / name / "adapter.safetensors"), "pt") as f:
        assert set(f.keys()) == set(fresh)
        for k in fresh:
            assert tuple(f.get_slice(k).get_shape()) == tuple(fresh[k].shape)
    model.load_adapter(recipes.ARTIFACTS / name)
    assert any(float(v.abs().sum()) > 0 for k, v in model.adapter_state().items() if "lora_B" in k)


@pytest.mark.parametrize("name", PUBLISHED)
def test_stored_ranking_belongs_to_the_committed_adapter(name):
    """Chapters 04, 05 and 09 re-measure each adapter from its stored top-100 lists; those
    lists must come from the adapter that is committed now (else: recipes evaluate NAME)."""
    import numpy as np

    path = recipes.verified_ranking_path(name, "test")
    with np.load(path) as z:
        assert z["item_ids"].shape[1] == 100 and len(z["user_ids"]) == z["item_ids"].shape[0]


def test_a_ranking_of_another_adapter_is_refused(tmp_path, monkeypatch):
    """A retrained adapter (full mode) makes the stored lists stale: an error that says what to run."""
    import shutil

    name = PUBLISHED[0]
    shutil.copytree(recipes.ARTIFACTS / name, tmp_path / name)
    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path)
    assert recipes.verified_ranking_path(name) == tmp_path / name / "ranking_test.npz"
    with open(tmp_path / name / "adapter.safetensors", "ab") as f:
        f.write(b"retrained")
    with pytest.raises(ValueError, match=f"recipes evaluate {name}"):
        recipes.verified_ranking_path(name)
    (tmp_path / name / "ranking_test.npz").unlink()
    with pytest.raises(FileNotFoundError, match=f"recipes evaluate {name}"):
        recipes.verified_ranking_path(name)

def test_build_setting_passes_verify_to_the_loader(copy, monkeypatch):
    """Chapter 03's ``verify_data`` reaches the checksum check: an edited folder loads only
    with ``verify=False`` (the default follows LLMREC_DATA_VERIFY, here on)."""
    from llmrec_lib import data

    monkeypatch.delenv("LLMREC_DATA_VERIFY", raising=False)
    with open(copy / "ratings.csv", "a", newline="") as fh:
        fh.write("1,2,5.0,964982704\r\n")
    with pytest.raises(data.ChecksumError):
        recipes.build_setting(copy)
    setting = recipes.build_setting(copy, verify=False)
    assert len(setting.ml.ratings) == 100837
    assert setting.item_text.index.equals(setting.history_text.index)


def test_run_length_is_the_one_per_mode_pattern(monkeypatch):
    """Steps per mode sit in one frozen RunLength (config.ModeSettings); recipe() reads them."""
    import dataclasses

    from llmrec_lib import config

    full = recipes.RunLength.for_mode("full")
    assert (full.steps, full.ablation_steps, full.sequence_steps) == (1600, 400, 800)
    quick = recipes.RunLength.for_mode("quick")
    assert (quick.steps, quick.ablation_steps, quick.sequence_steps) == (12, 12, 12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.steps = 1
    monkeypatch.setenv("LLMREC_MODE", "full")
    assert recipes.RunLength.for_mode() == full
    for name in recipes.RECIPES:
        assert recipes.recipe(name, "full")[1].steps == full.steps_for(name)
    assert recipes.recipe("mixed", "quick")[1].steps == 12
    assert recipes.recipe("ablate-bce", "full")[1].steps == 400
    enc, tr = recipes.recipe("scale-tokens256", "full")  # the budget binds, not the window
    assert (enc.user_max_tokens, tr.user_budget, tr.history_items, tr.steps) == (256, 256, 40, 400)
    assert recipes.recipe("scale-tokens96", "quick")[1].history_items == 15
    settings = config.Settings.for_mode("quick", chapter="00", quick={"users": 5}, full={"users": 9})
    assert settings.mode == "quick" and settings.sizes == {"users": 5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1


def test_retrain_trains_publishes_and_stores_the_test_lists(monkeypatch, tmp_path):
    """recipes.retrain is chapter 03's full-mode step: the CLI's train, publish and evaluate."""
    calls = []
    monkeypatch.setattr(recipes, "train_recipe", lambda name, mode, **kw: calls.append(
        ("train", name, mode, kw["evaluate_every"])) or "trainer")
    monkeypatch.setattr(recipes, "publish", lambda trainer, name, secs, command: calls.append(
        ("publish", trainer, name, command)) or tmp_path / name)
    monkeypatch.setattr(recipes, "evaluate_published", lambda name, setting, stage, save: calls.append(
        ("evaluate", name, setting, stage, save)))
    out = recipes.retrain("infonce", "SETTING", evaluate_every=400)
    assert out == tmp_path / "infonce"
    assert calls == [
        ("train", "infonce", "full", 400),
        ("publish", "trainer", "infonce",
         "python -m llmrec_lib.recipes train infonce --mode full --eval-every 400"),
        ("evaluate", "infonce", "SETTING", "test", True),
    ]
    calls.clear()
    recipes.retrain("infonce", "SETTING")
    assert calls[1][3] == "python -m llmrec_lib.recipes train infonce --mode full"


def test_a_serving_point_has_its_own_stored_lists(tmp_path, monkeypatch):
    """Chapter 03's whole-history arm stores its lists per (weight, beta): a missing file names
    the command with that point, and the model-alone lists do not stand in for it."""
    import shutil

    name = PUBLISHED[0]
    shutil.copytree(recipes.ARTIFACTS / name, tmp_path / name)
    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path)
    path = recipes.ranking_path(name, "test", (0.5, 0.05))
    assert path.name == "ranking_test_whole_history_w0.5_b0.05.npz"
    assert path != recipes.ranking_path(name, "test")
    with pytest.raises(FileNotFoundError, match=f"evaluate {name} --stage test --whole-history 0.5 0.05"):
        recipes.verified_ranking_path(name, "test", (0.5, 0.05))


def test_prompts_are_written_the_way_the_encoder_reads_them():
    from llmrec_lib import synthetic

    setting = recipes.world_setting(synthetic.make_world(n_users=20, n_items=30, seed=1))
    base = EncoderConfig()
    assert setting.texts_for(base) == (setting.item_text, setting.history_text)  # the book's own
    items, history = setting.texts_for(EncoderConfig(history_fields=("title",), pop_format="count"))
    assert not history.str.contains(text.GENRES, regex=False).any()
    assert setting.history_text.str.contains(text.GENRES, regex=False).all()
    assert items.str.contains(r"\[POP\] \d+$").all()  # the raw count, not a bucket token
    assert setting.texts_for(EncoderConfig(pop_format="count"))[1] is setting.history_text
    # an adapter saved before these settings existed reads as the book's prompts
    old = {k: v for k, v in base.to_dict().items() if k not in ("history_fields", "pop_format")}
    assert EncoderConfig.from_dict(old) == base
    assert EncoderConfig.from_dict(EncoderConfig(history_fields=("title",)).to_dict()).history_fields == ("title",)


def test_a_stored_serving_point_must_belong_to_the_committed_adapter(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path)
    shutil.copytree(PUBLISHED_DIR / "mixed", tmp_path / "mixed")
    with pytest.raises(FileNotFoundError, match="tune-point mixed"):
        recipes.stored_point("mixed")
    rec = {"recipe": "mixed", "adapter_sha": recipes.adapter_sha("mixed"), "point": [0.25, 0.05]}
    recipes.point_path("mixed").write_text(json.dumps(rec))
    assert recipes.stored_point("mixed") == (0.25, 0.05)
    recipes.point_path("mixed").write_text(json.dumps(rec | {"adapter_sha": "0" * 16}))
    with pytest.raises(ValueError, match="another adapter"):
        recipes.stored_point("mixed")


def test_committed_serving_points_are_current():
    for name in PUBLISHED:
        if recipes.point_path(name).is_file():
            w, b = recipes.stored_point(name)
            assert w in recipes.SERVING_WEIGHTS and b in recipes.SERVING_BETAS
            recipes.verified_ranking_path(name, "test", (w, b))
            for other in recipes.seeds_of(name):
                recipes.verified_ranking_path(other, "test", (w, b))


def test_stored_points_are_the_points_every_named_adapter_has_lists_at(tmp_path, monkeypatch):
    """Quick mode serves a recipe's seeds at a point only if each of them has lists there."""
    import shutil

    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path)
    for name in ("mixed", "mixed-seed1"):
        shutil.copytree(PUBLISHED_DIR / name, tmp_path / name)
    for name in ("mixed", "mixed-seed1"):
        for p in (tmp_path / name).glob("ranking_test_whole_history_*.npz"):
            p.unlink()
    assert recipes.stored_points(["mixed", "mixed-seed1"]) == []
    for point in ((0.0, 0.02), (0.5, 0.05)):
        recipes.ranking_path("mixed-seed1", "test", point).write_bytes(b"")
    recipes.ranking_path("mixed", "test", (0.0, 0.02)).write_bytes(b"")
    recipes.ranking_path("mixed", "valid", (0.5, 0.05)).write_bytes(b"")  # another stage
    assert recipes.stored_points("mixed-seed1") == [(0.0, 0.02), (0.5, 0.05)]
    assert recipes.stored_points(["mixed", "mixed-seed1"]) == [(0.0, 0.02)]
    assert recipes.stored_points(["mixed"], "valid") == [(0.5, 0.05)]


def test_seed_point_falls_back_to_the_stored_point_in_quick_mode_only(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(recipes, "ARTIFACTS", tmp_path)
    names = ["mixed-seed1", "mixed-seed2"]
    for name in names:
        shutil.copytree(PUBLISHED_DIR / name, tmp_path / name)
    stored, *more = recipes.stored_points(names)
    for point in more:  # the committed seeds keep two points: leave one, the fallback's case
        for name in names:
            recipes.ranking_path(name, "test", point).unlink()
    assert recipes.stored_points(names) == [stored]
    other = (stored[0], 0.4 if stored[1] != 0.4 else 0.2)
    assert recipes.seed_point(names, stored, "quick") == stored
    assert recipes.seed_point(names, other, "quick") == stored  # a flipped near-tie
    assert recipes.seed_point(names, other, "full") == other  # full mode recomputes
    recipes.ranking_path("mixed-seed1", "test", other).write_bytes(b"")
    recipes.ranking_path("mixed-seed2", "test", other).write_bytes(b"")
    assert recipes.seed_point(names, other, "quick") == other
    recipes.ranking_path("mixed-seed2", "test", other).unlink()
    recipes.ranking_path("mixed-seed2", "test", stored).unlink()
    with pytest.raises(FileNotFoundError, match="evaluate NAME --stage test --whole-history"):
        recipes.seed_point(names, (0.25, 1.0), "quick")


def test_a_stored_source_refuses_lists_shorter_than_the_ranks_read():
    setting = recipes.build_setting()
    name, point = "infonce-seed1", (0.5, 0.05)
    source = recipes.stored_source(name, setting, "test", point, depth=100)
    assert source.score(source.ranking.user_ids[:2]).shape == (2, len(setting.ml.item_ids))
    if source.ranking.depth < recipes.FUSION_LIST_DEPTH:
        with pytest.raises(ValueError, match="--whole-history 0.5 0.05 --depth 1000"):
            recipes.stored_source(name, setting, "test", point)
