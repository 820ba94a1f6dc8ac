"""The assignments grade honestly: `make assignments` builds them, the autograder gives full
marks to the reference solutions and nothing to the unmodified student notebook, and the
student notebook holds neither solution text nor hidden tests.

Grading executes each notebook in a kernel (otter's local, docker-free path:
``otter.api.grade_submission``), so those tests are marked ``grading`` (a few seconds to half a
minute each); they run in CI like every other test.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import pytest

from llmrec_lib import config

ROOT = config.PROJECT_ROOT
MASTERS = sorted((ROOT / "assignments").glob("[0-9][0-9]_*.py"))
IDS = [m.stem for m in MASTERS]

pytest.importorskip("otter", reason="otter-grader is a dependency: run make setup")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_assignments
    finally:
        sys.path.pop(0)
    out = tmp_path_factory.mktemp("assignments")
    return {m.stem: build_assignments.build_one(m, out) for m in MASTERS}


def _code_cells(master: Path) -> list[str]:
    import jupytext

    nb = jupytext.read(master)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _solution_and_other_lines(master: Path) -> tuple[set[str], set[str]]:
    """Lines a student must not see (inside ``# BEGIN/END SOLUTION`` or ending ``# SOLUTION``),
    and every other line of the master's code cells."""
    secret, other = set(), set()
    for source in _code_cells(master):
        inside = False
        for line in source.splitlines():
            s = line.strip()
            if s == "# BEGIN SOLUTION":
                inside = True
            elif s == "# END SOLUTION":
                inside = False
            elif inside:
                secret.add(s)
            elif s.endswith("# SOLUTION"):
                secret.add(s[: -len("# SOLUTION")].strip())
            else:
                other.add(s)
    # a line the student is shown elsewhere anyway (a blank, "return out") is no secret
    return {s for s in secret - other if len(s) > 3}, other


def _hidden_test_lines(master: Path) -> set[str]:
    lines = set()
    for source in _code_cells(master):
        body = source.splitlines()
        if body and re.match(r"#\s*hidden\b", body[0].strip(), re.I):
            lines |= {l.strip() for l in body[1:] if len(l.strip()) > 3}
    return lines


def test_there_are_assignments():
    assert MASTERS, "assignments/ holds no NN_name.py master"


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_master_belongs_to_a_chapter(master):
    assert (ROOT / "chapters" / master.name).is_file(), (
        f"{master.name}: an assignment master is named after its chapter (chapters/{master.name})")


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_masters_have_solutions_and_hidden_tests(master):
    secret, _ = _solution_and_other_lines(master)
    assert secret, f"{master.name} marks no solution (# BEGIN SOLUTION ... # END SOLUTION or # SOLUTION)"
    assert _hidden_test_lines(master), f"{master.name} has no hidden test (a test cell starting # HIDDEN)"


@pytest.mark.parametrize("name", IDS)
def test_build_layout(built, name):
    dest = built[name]
    for path in (f"student/{name}.ipynb", f"autograder/{name}.ipynb", "autograder/autograder.zip"):
        assert (dest / path).is_file(), path
    assert not list((dest / "student").glob("*.zip")), "the student folder must not hold the autograder"


@pytest.mark.parametrize("name", IDS)
def test_every_question_has_public_and_hidden_tests(built, name):
    with zipfile.ZipFile(built[name] / "autograder" / "autograder.zip") as zf:
        tests = {n: zf.read(n).decode() for n in zf.namelist() if re.fullmatch(r"tests/q\w*\.py", n)}
    assert tests, "the autograder holds no tests"
    for path, body in tests.items():
        hidden = re.findall(r"'hidden': (True|False)", body)
        assert "True" in hidden and "False" in hidden, f"{path}: needs a public and a hidden test case"


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_student_version_has_no_solution_text(built, master):
    student = (built[master.stem] / "student" / f"{master.stem}.ipynb").read_text()
    cells = json.loads(student)["cells"]
    text = "\n".join("".join(c["source"]) for c in cells) + json.dumps(json.loads(student)["metadata"])
    secret, _ = _solution_and_other_lines(master)
    leaked = sorted(s for s in secret if s in text)
    assert not leaked, f"solution lines in the student notebook: {leaked}"
    hidden = sorted(s for s in _hidden_test_lines(master) if s in text)
    assert not hidden, f"hidden test lines in the student notebook: {hidden}"
    assert "..." in text, "the student notebook should show placeholders where the solutions were"


def _grade(notebook: Path, autograder: Path):
    from otter.api import grade_submission

    return grade_submission(str(notebook), str(autograder), quiet=True)


def _case_results(results) -> list[tuple[str, bool]]:
    out = []
    for q, res in results.to_dict().items():
        for case in res["test_case_results"]:
            out.append((case["test_case"]["name"], bool(case["passed"])))
    return out


@pytest.fixture
def needs_data(request, master):
    if "load_movielens" in master.read_text():
        request.getfixturevalue("data_dir")


@pytest.mark.grading
@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_reference_solutions_get_full_marks(built, master, needs_data):
    dest = built[master.stem]
    results = _grade(dest / "autograder" / f"{master.stem}.ipynb", dest / "autograder" / "autograder.zip")
    cases = _case_results(results)
    assert results.possible > 0 and cases
    failed = [name for name, ok in cases if not ok]
    assert not failed and results.total == results.possible, f"reference solutions fail {failed}"


@pytest.mark.grading
@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_unmodified_student_version_gets_no_marks(built, master, needs_data):
    dest = built[master.stem]
    results = _grade(dest / "student" / f"{master.stem}.ipynb", dest / "autograder" / "autograder.zip")
    cases = _case_results(results)
    passed = [name for name, ok in cases if ok]
    assert cases and not passed and results.total == 0, f"the blank student notebook passes {passed}"


# A plausible wrong answer per assignment: one exact piece of the reference solution, what a
# student might write instead, and the mistake it stands for. The reference notebook with that
# one edit must lose marks: the tests catch the mistakes students make, not only blanks.
WRONG_ANSWERS = {
    "00_introduction": (
        "return float(hits / min(k, len(targets)))", "return float(hits / len(targets))",
        "plain recall: a user with more targets than k can never reach 1"),
    "01_text_featurization": (
        "return (lo + hi) // 2", "return lo",
        "ties go to the lowest bucket instead of the mid-rank"),
    "02_baselines": (
        "positives = split.train[split.train[\"rating\"] >= data.POSITIVE_MIN]",
        "positives = split.train",
        "popularity counts every rating, not only the likes"),
    "03_llm_dual_encoder": (
        "logits = torch.cat([in_batch, hard_logits], dim=1) / temperature",
        "logits = in_batch / temperature",
        "the hard negatives never enter the softmax"),
    "05_matryoshka_ann": (
        "base(F.normalize(users[:, :d], dim=-1), F.normalize(items[:, :d], dim=-1))",
        "base(users[:, :d], items[:, :d])",
        "prefixes scored without re-normalising them"),
    "04_hard_negatives_ablations": (
        'masked_fill(mask, float("-inf"))', "masked_fill(mask, 0.0)",
        "a masked column gets a logit of 0 instead of leaving the denominator"),
    "06_interest_mining": (
        "need = max(1, min(min_support, len(items)))", "need = min_support",
        "a short history still has to support an interest min_support times"),
    "07_tag_prediction": (
        "for t in user_tags[:k]}", "for t in user_tags}",
        "every tag counts, not only the first k"),
    "09_offline_ab": (
        "means = d[idx].mean(axis=1)",
        "means = np.asarray(a, dtype=float)[idx].mean(axis=1) - "
        "np.asarray(b, dtype=float)[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)",
        "an unpaired bootstrap: the two arms resampled with different users"),
    "10_scaling_out": (
        "return weights + attention", "return weights",
        "FLOPs without the attention term"),
    "08_three_towers": (
        "return any(abs(y - int(year)) > tolerance for y in years_named(explanation))",
        "return any(y != int(year) for y in years_named(explanation))",
        "no tolerance: a year off by one is called wrong"),
}
WRONG = [m for m in MASTERS if m.stem in WRONG_ANSWERS]


@pytest.mark.parametrize("master", MASTERS, ids=IDS)
def test_masters_have_a_plausible_wrong_answer(master):
    assert master.stem in WRONG_ANSWERS, f"{master.name}: define a plausible wrong answer in WRONG_ANSWERS"
    right = WRONG_ANSWERS[master.stem][0]
    secret, _ = _solution_and_other_lines(master)
    assert sum(right in s for s in secret) == 1, f"{right!r} is not exactly one solution line of {master.name}"


@pytest.mark.grading
@pytest.mark.parametrize("master", WRONG, ids=[m.stem for m in WRONG])
def test_plausible_wrong_answer_loses_marks(built, master, needs_data, tmp_path):
    right, wrong, mistake = WRONG_ANSWERS[master.stem]
    dest = built[master.stem]
    nb = json.loads((dest / "autograder" / f"{master.stem}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert sum("".join(c["source"]).count(right) for c in code) == 1, f"{right!r} not once in the reference notebook"
    for c in code:
        src = "".join(c["source"])
        if right in src:
            c["source"] = src.replace(right, wrong)
    submission = tmp_path / f"{master.stem}.ipynb"
    submission.write_text(json.dumps(nb))
    results = _grade(submission, dest / "autograder" / "autograder.zip")
    failed = [name for name, ok in _case_results(results) if not ok]
    print(f"{master.stem}: {mistake}: {results.total:g}/{results.possible:g}, fails {failed}")
    assert failed and results.total < results.possible, f"{mistake} still gets full marks"
