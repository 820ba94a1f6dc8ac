"""tools/train_recipes.py: the job syntax, checked before anything trains."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import train_recipes  # noqa: E402


def test_a_job_names_its_recipe_validation_interval_and_serving_points():
    assert train_recipes.parse_job("scale-layers30") == ("scale-layers30", 0, [])
    assert train_recipes.parse_job("matryoshka-seed1:800") == (
        "matryoshka-seed1",
        800,
        [],
    )
    assert train_recipes.parse_job("mixed-seed1:200:0,0.02;0.5,0.05") == (
        "mixed-seed1",
        200,
        [("0", "0.02"), ("0.5", "0.05")],
    )


@pytest.mark.parametrize(
    "spec", ["", ":200", "a:1:0,1:extra", "a:x", "a:200:0.5", "a:200:w,b"]
)
def test_a_malformed_job_stops_the_run_before_it_starts(spec):
    with pytest.raises(SystemExit, match="NAME"):
        train_recipes.parse_job(spec)


def test_an_unknown_recipe_is_refused_before_any_job_starts(tmp_path):
    with pytest.raises(SystemExit, match="unknown recipe"):
        train_recipes.main(
            ["infonce", "no-such-recipe", "--deadline", "1", "--pack", str(tmp_path)]
        )
    assert not list(tmp_path.iterdir())  # nothing ran, nothing packed
