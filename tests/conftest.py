"""Shared fixtures. Real-data tests skip with a clear reason when the MovieLens folder is absent."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir():
    from llmrec_lib import config

    folder = config.data_dir()
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"MovieLens not found at {folder}: set LLMREC_DATA_DIR (see README)")
    return folder


@pytest.fixture(scope="session")
def ml(data_dir):
    from llmrec_lib import data

    return data.load_movielens(data_dir)


@pytest.fixture(scope="session")
def split(ml):
    from llmrec_lib import data

    return data.per_user_split(ml.ratings)


@pytest.fixture(scope="session")
def setting(data_dir):
    """The RecGPT chapters' shared setting (recgpt.build_setting), built once per session."""
    from llmrec_lib import recgpt

    return recgpt.build_setting(data_dir)


@pytest.fixture()
def copy(tmp_path, data_dir):
    """A writable copy of the MovieLens folder, for tests that damage or edit files."""
    import shutil

    dest = tmp_path / "ml"
    shutil.copytree(data_dir, dest)
    for f in dest.iterdir():
        f.chmod(0o644)
    return dest


def append_text(path, text):
    """Append ``text`` to a file as written (no newline translation)."""
    with open(path, "a", newline="") as fh:
        fh.write(text)


@pytest.fixture(scope="session")
def world():
    from llmrec_lib import synthetic

    return synthetic.make_world(seed=0)


@pytest.fixture(scope="session", autouse=True)
def results_elsewhere(tmp_path_factory):
    """Unit tests write results (config.Claims.table keeps claims/chNN.json) to a folder of
    their own, never into the reader's results/ where the chapters' run lives."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMREC_RESULTS_DIR", str(tmp_path_factory.mktemp("results")))
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The models in the tests are tiny: one thread avoids OpenMP hand-offs that cost more
    than the maths when other processes share the 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    """The random tiny Llama: no package, no download."""
    from llmrec_lib import backbones

    return backbones.load_backbone("tiny-llama", device="cpu")


def noisy_tiny_llama():
    """tiny-llama with larger random weights (std 0.2): at its default init (0.02) it greedily
    repeats one whitespace byte for every prompt and its residual stream carries almost
    nothing for LoRA to steer, which would make generation and fine-tuning tests vacuous."""
    import torch

    from llmrec_lib import backbones

    backbone = backbones.load_backbone("tiny-llama", device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in backbone.model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return backbone
