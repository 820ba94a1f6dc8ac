"""`make reproduce` (tools/reproduce.py): full mode, resumable, with a manifest of what it took."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reproduce  # noqa: E402


def _notebook(path: Path, code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path):
    (tmp_path / "llmrec_lib").mkdir()
    (tmp_path / "llmrec_lib" / "a.py").write_text("x = 1\n")
    nbs = [_notebook(tmp_path / f"0{i}_ch.ipynb", f"print({i})") for i in (1, 2)]
    return tmp_path, nbs


def _fake(calls, fail=()):
    def executor(nb, build_dir, env):
        calls.append((nb.stem, env["LLMREC_MODE"]))
        nbformat.write(nbformat.v4.new_notebook(), build_dir / nb.name)
        return 1 if nb.stem in fail else 0
    return executor


def test_runs_in_order_in_full_mode_and_records_each_chapter(project):
    root, nbs = project
    calls = []
    m = reproduce.run(nbs, root / "res", root / "build", lib_dir=root / "llmrec_lib", root=root, executor=_fake(calls))
    assert calls == [("01_ch", "full"), ("02_ch", "full")]
    saved = json.loads((root / "res" / reproduce.MANIFEST).read_text())
    assert saved == m and set(m["chapters"]) == {"01_ch", "02_ch"}
    assert all(c["status"] == "done" and c["seconds"] >= 0 for c in m["chapters"].values())
    assert m["hardware"]["logical_cpus"] >= 1 and m["mode"] == "full"
    assert (m["results_dir"], m["build_dir"]) == ("res", "build")  # relative: no machine path


def test_a_rerun_skips_finished_chapters_unless_the_code_changed(project):
    root, nbs = project
    kw = dict(lib_dir=root / "llmrec_lib", root=root)
    reproduce.run(nbs, root / "res", root / "build", executor=_fake([]), **kw)
    calls = []
    reproduce.run(nbs, root / "res", root / "build", executor=_fake(calls), **kw)
    assert calls == []
    _notebook(nbs[1], "print('changed')")
    reproduce.run(nbs, root / "res", root / "build", executor=_fake(calls), **kw)
    assert calls == [("02_ch", "full")]
    (root / "llmrec_lib" / "a.py").write_text("x = 2\n")  # a library change reruns everything
    calls.clear()
    reproduce.run(nbs, root / "res", root / "build", executor=_fake(calls), **kw)
    assert [c for c, _ in calls] == ["01_ch", "02_ch"]
    calls.clear()
    reproduce.run(nbs, root / "res", root / "build", executor=_fake(calls), force=True, **kw)
    assert len(calls) == 2


def test_a_failing_chapter_stops_the_run_and_is_recorded(project):
    root, nbs = project
    calls = []
    with pytest.raises(SystemExit, match="01_ch failed"):
        reproduce.run(nbs, root / "res", root / "build", lib_dir=root / "llmrec_lib", root=root,
                      executor=_fake(calls, fail={"01_ch"}))
    assert calls == [("01_ch", "full")]
    m = json.loads((root / "res" / reproduce.MANIFEST).read_text())
    assert m["chapters"]["01_ch"]["status"] == "failed" and "02_ch" not in m["chapters"]


def test_a_missing_notebook_says_how_to_build_it(project):
    root, nbs = project
    with pytest.raises(FileNotFoundError, match="make notebooks"):
        reproduce.run([root / "nope.ipynb"], root / "res", root / "build", lib_dir=root / "llmrec_lib", root=root)


def test_executes_a_real_notebook_with_the_full_mode_environment(tmp_path):
    code = ("import os, pathlib\n"
            "pathlib.Path(os.environ['LLMREC_RESULTS_DIR'], 'mode.txt').write_text(os.environ['LLMREC_MODE'])\n"
            "import matplotlib.pyplot as plt\n"
            "plt.plot([0, 1]); plt.show()")
    nb = _notebook(tmp_path / "00_env.ipynb", code)
    (tmp_path / "llmrec_lib").mkdir()
    m = reproduce.run([nb], tmp_path / "res", tmp_path / "build", lib_dir=tmp_path / "llmrec_lib", root=tmp_path)
    assert (tmp_path / "res" / "mode.txt").read_text() == "full"
    assert (tmp_path / "build" / "00_env.ipynb").is_file() and m["chapters"]["00_env"]["status"] == "done"
    figures = list((tmp_path / "res" / "figures").glob("00_env-*.png"))
    assert m["chapters"]["00_env"]["figures"] == len(figures) == 1
    assert figures[0].read_bytes().startswith(b"\x89PNG")


def test_commit_is_marked_only_when_code_differs(tmp_path):
    """Full mode rewrites artifacts/ and results/; only other changes mean the code is not HEAD's."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for d in ("artifacts", "results", "llmrec_lib"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f.txt").write_text("a")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = reproduce.git_commit(tmp_path)
    (tmp_path / "artifacts" / "f.txt").write_text("retrained")
    (tmp_path / "results" / "f.txt").write_text("rerun")
    assert reproduce.git_commit(tmp_path) == clean and "+" not in clean
    (tmp_path / "llmrec_lib" / "f.txt").write_text("edited")
    assert reproduce.git_commit(tmp_path) == clean + "+uncommitted changes"
