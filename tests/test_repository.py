"""What the repository itself holds: no file a reader clones may depend on the author's machine."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from llmrec_lib import config

ROOT = Path(__file__).resolve().parents[1]
# An absolute path on someone's machine (under /work, /tmp, /home, /root or /Users) that opens a
# quoted string or JSON value, or follows "=" in a shell usage line (LLMREC_DATA_DIR=...).
MACHINE_PATH = re.compile(r"""["'=]/(work|tmp|home|root|Users)/""")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git): nothing tracked to scan")
    files = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or name.endswith(".ipynb") or not path.is_file():  # deleted, not yet committed
            continue
        files.append(path)
    return files


def _machine_paths(path: Path) -> list[str]:
    raw = path.read_bytes()
    if b"\0" in raw[:8192]:
        return []  # binary (weights, arrays, images)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    rel = path.relative_to(ROOT).as_posix()
    return [f"{rel}:{i}: {line.strip()[:120]}" for i, line in enumerate(text.splitlines(), 1)
            if MACHINE_PATH.search(line)]


def test_no_tracked_file_holds_an_absolute_machine_path():
    hits = [hit for path in _tracked_text_files() for hit in _machine_paths(path)]
    assert not hits, (
        "absolute machine paths in tracked files (write them relative to the repository, e.g. "
        "with config.relative_to_root, or to LLMREC_DATA_DIR):\n" + "\n".join(hits)
    )


def test_the_scan_sees_what_it_must():
    home, work = "/" + "home/me/ml", "/" + "work/shared/data/ml-latest-small"  # split: this file is scanned too
    assert MACHINE_PATH.search(f'"data_dir": "{work}"') and MACHINE_PATH.search(f"x = '{work}'")
    assert MACHINE_PATH.search(f"LLMREC_DATA_DIR={home} .venv/bin/python x.py")
    assert not MACHINE_PATH.search('"data_dir": "ml-latest-small"')
    assert not MACHINE_PATH.search("LLMREC_DATA_DIR=../shared/data/ml-latest-small")


def test_relative_to_root_never_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_DATA_DIR", str(tmp_path / "data" / "ml-latest-small"))
    root = tmp_path / "repo"
    assert config.relative_to_root(root / "results" / "full", root) == "results/full"
    assert config.relative_to_root(root, root) == "."
    assert config.relative_to_root(tmp_path / "data" / "ml-latest-small", root) == "ml-latest-small"
    assert config.relative_to_root(tmp_path / "data" / "ml-latest-small" / "tags.csv", root) == "ml-latest-small/tags.csv"
    assert config.relative_to_root(tmp_path / "elsewhere" / "x.npz", root) == "../elsewhere/x.npz"
    assert config.relative_to_root(config.PROJECT_ROOT / "artifacts") == "artifacts"


def test_command_line_is_pasteable():
    assert config.command_line("llmrec_lib.tagger", ["full", "--valid-users", "100"]) == (
        "python -m llmrec_lib.tagger full --valid-users 100")
    assert config.command_line("m", ["a b"]) == "python -m m 'a b'"


def test_settings_record_the_data_folder_by_name(tmp_path, monkeypatch):
    """Chapters write cfg.as_dict() into results/full/*.json: the data folder goes in by name."""
    folder = tmp_path / "ml-latest-small"
    monkeypatch.setenv("LLMREC_DATA_DIR", str(folder))
    s = config.Settings(chapter="02", mode="full", seed=0, device="cpu", data_dir=folder, backbone="b")
    assert s.as_dict()["data_dir"] == "ml-latest-small"
