"""Other data than the reference release (issue 16, part 1): the LLMREC_DATA_VERIFY switch,
config.reference_data, tolerant loading of the optional files, claims that are asserted or
reported, the derived data set for CI's second run, and the MovieLens 1M converter."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from llmrec_lib import config, data
from tests.conftest import append_text as _append

ENV = "LLMREC_DATA_VERIFY"


@pytest.fixture(autouse=True)
def _switch_unset(monkeypatch, tmp_path):
    """Each test starts from the default (checksums on), whatever the reader's shell says, and
    writes results (the claims tables Claims.table keeps) to a folder of its own."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("LLMREC_RESULTS_DIR", str(tmp_path / "results"))


# ---- the switch ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, True), ("", True), ("1", True), ("true", True), (" Yes ", True), ("on", True),
    ("0", False), ("false", False), ("NO", False), ("off", False),
])
def test_switch_reads_the_environment(monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv(ENV, value)
    assert config.data_verify() is expected


def test_explicit_argument_beats_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    assert config.data_verify(True) is True and config.data_verify(np.bool_(True)) is True
    monkeypatch.setenv(ENV, "1")
    assert config.data_verify(False) is False and config.data_verify("off") is False


def test_switch_rejects_what_it_cannot_read(monkeypatch):
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ValueError, match=f"{ENV}=0") as err:
        config.data_verify()
    assert "'maybe'" in str(err.value)


def test_loader_follows_the_switch(copy, monkeypatch):
    _append(copy / "ratings.csv", "1,2,5.0,964982704\r\n")
    with pytest.raises(data.ChecksumError, match=f"{ENV}=0"):
        data.load_movielens(copy)  # default: checksums on, and the error names the switch
    monkeypatch.setenv(ENV, "0")
    assert len(data.load_movielens(copy).ratings) == 100837
    with pytest.raises(data.ChecksumError):
        data.load_movielens(copy, verify=True)  # an explicit argument still wins


def test_reference_folder_still_verifies(data_dir, monkeypatch):
    data.verify_files(data_dir)
    assert data.load_movielens(data_dir).summary()["users"] == 610
    assert config.reference_data(data_dir) is True
    monkeypatch.setenv(ENV, "0")  # switched off, the reference release is still the reference
    assert config.reference_data(data_dir) is True
    assert "every claim is asserted" in config.data_status(data_dir)


def test_other_data_is_not_the_reference(copy, tmp_path, monkeypatch):
    assert config.reference_data(copy) is True  # a faithful copy is the reference
    _append(copy / "ratings.csv", "1,2,5.0,964982704\n")
    assert config.reference_data(copy) is False  # the cache sees the change
    assert config.reference_data(tmp_path / "nowhere") is False
    monkeypatch.setenv(ENV, "0")
    status = config.data_status(copy)
    assert "reported, not asserted" in status and "checksums skipped" in status
    monkeypatch.setenv("LLMREC_DATA_DIR", str(copy))
    assert config.reference_data() is False  # no argument: LLMREC_DATA_DIR


# ---- claims: asserted on the reference, reported elsewhere -------------------------------

def test_claims_on_the_reference_are_asserted():
    claims = config.Claims("00", reference=True)
    verdict = claims.check("610 users", True)
    assert verdict and verdict == True and repr(verdict) == "True"  # noqa: E712
    assert verdict._ipython_display_() is None  # a cell ending in a check prints nothing
    with pytest.raises(AssertionError, match="on the reference release: 9742 movies"):
        claims.check("9742 movies", False, detail="found 9000")


def test_claims_elsewhere_are_reported_but_mechanics_stay_asserted():
    claims = config.Claims("00", reference=False)
    verdict = claims.check("610 users", False, detail="365 here")
    assert not verdict and verdict == False and repr(verdict) == "False"  # noqa: E712
    assert claims.check("splits are disjoint", True, pinned=False)
    with pytest.raises(AssertionError, match="a mechanic"):
        claims.check("no future leak", False, pinned=False)
    table = claims.table()
    assert list(table.columns) == ["claim", "kind", "holds here", "detail"]
    assert table["holds here"].tolist() == ["no", "yes", "no"]
    assert table["kind"].tolist()[:2] == ["pinned to reference", "mechanic"]
    assert [c.claim for c in claims.failed] == ["610 users", "no future leak"]


def test_skipped_claims_are_reported_elsewhere_and_refused_on_the_reference():
    claims = config.Claims("03", reference=False)
    assert claims.artifacts_fit is False
    claims.skip("the committed adapter beats popularity", "needs the committed adapter")
    claims.check("loss falls", True, pinned=False)
    assert [c.claim for c in claims.skipped] == ["the committed adapter beats popularity"]
    assert claims.failed == []
    table = claims.table()
    assert table["holds here"].tolist() == ["not tested", "yes"]
    assert table["detail"][0] == "not tested: needs the committed adapter"
    on_ref = config.Claims("03", reference=True)
    assert on_ref.artifacts_fit is True
    with pytest.raises(AssertionError, match="every claim is tested"):
        on_ref.skip("the committed adapter beats popularity", "no reason holds here")


def test_claims_about_committed_artifacts_run_only_where_they_fit():
    ran = []

    def test():
        ran.append(1)
        return False, "0.1 < 0.2"

    elsewhere = config.Claims("06", reference=False)
    assert elsewhere.check_committed("student beats rule", test, "needs the run") is None
    elsewhere.check_committed("resume equals no interrupt", test, "needs the run", pinned=False)
    assert ran == []  # never evaluated where the artifacts do not fit
    table = elsewhere.table()
    assert table["holds here"].tolist() == ["not tested", "not tested"]
    assert table["kind"].tolist() == ["pinned to reference", "mechanic"]
    on_ref = config.Claims("06", reference=True)
    with pytest.raises(AssertionError, match="student beats rule .0.1 < 0.2."):
        on_ref.check_committed("student beats rule", test, "needs the run")
    assert ran == [1]


def test_claims_ask_the_data_by_default(copy, data_dir):
    assert config.Claims(path=data_dir).reference is True
    _append(copy / "ratings.csv", "1,2,5.0,964982704\n")
    assert config.Claims(path=copy).reference is False


# ---- tolerant loading ---------------------------------------------------------------------

def test_missing_tags_and_links_load_as_empty_tables(copy):
    (copy / "tags.csv").unlink()
    (copy / "links.csv").unlink()
    with pytest.raises(data.ChecksumError, match="missing"):
        data.load_movielens(copy)
    ml = data.load_movielens(copy, verify=False)
    assert list(ml.tags.columns) == ["user_id", "item_id", "tag", "timestamp"] and len(ml.tags) == 0
    assert ml.tags.dtypes["user_id"] == np.int64 and ml.tags.dtypes["timestamp"] == np.int64
    assert list(ml.links.columns) == ["item_id", "imdb_id", "tmdb_id"] and len(ml.links) == 0
    assert ml.summary()["tags"] == 0 and len(ml.ratings) == 100836


@pytest.mark.parametrize("content", [b"", b"\n", b"  \r\n", None])
def test_empty_tags_and_links_load_as_empty_tables(copy, content):
    for name, header in (("tags.csv", b"userId,movieId,tag,timestamp\r\n"),
                         ("links.csv", b"movieId,imdbId,tmdbId\n")):
        (copy / name).write_bytes(header if content is None else content)  # None: header only
    ml = data.load_movielens(copy, verify=False)
    assert len(ml.tags) == 0 and len(ml.links) == 0
    assert list(ml.links.columns) == ["item_id", "imdb_id", "tmdb_id"]


@pytest.mark.parametrize("name", ["ratings.csv", "movies.csv"])
def test_missing_required_file_says_what_to_write(copy, name):
    (copy / name).unlink()
    for verify in (True, False):
        with pytest.raises(data.DataNotFoundError, match=name) as err:
            data.load_movielens(copy, verify=verify)
        msg = str(err.value)
        assert "make data" in msg and "userId, movieId, rating, timestamp" in msg
        assert "movieId, title, genres" in msg and f"{ENV}=0" in msg


@pytest.mark.parametrize("name", ["ratings.csv", "movies.csv"])
def test_empty_required_file_is_a_clear_error(copy, name):
    (copy / name).write_bytes(b"")
    with pytest.raises(data.SchemaError, match="is empty") as err:
        data.load_movielens(copy, verify=False)
    assert str(copy / name) in str(err.value)


@pytest.mark.parametrize("name, header, expected", [
    ("movies.csv", "id,title,genres", "movieId, title, genres"),
    ("ratings.csv", "user,movieId,rating,timestamp", "userId, movieId, rating, timestamp"),
    ("tags.csv", "userId,movieId,label,timestamp", "userId, movieId, tag, timestamp"),
    ("links.csv", "movieId,imdb,tmdbId", "movieId, imdbId, tmdbId"),
])
def test_bad_columns_name_the_file_and_the_layout(copy, name, header, expected):
    lines = (copy / name).read_text().splitlines()
    (copy / name).write_text("\n".join([header, *lines[1:]]) + "\n")
    with pytest.raises(data.SchemaError) as err:
        data.load_movielens(copy, verify=False)
    msg = str(err.value)
    assert str(copy / name) in msg and expected in msg and "header row" in msg


def test_dat_layout_points_to_the_converter(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n")
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    with pytest.raises(data.DataNotFoundError, match="convert-ml1m"):
        data.load_movielens(tmp_path, verify=False)
    # .dat content saved under a .csv name: the column error says so too
    (tmp_path / "ratings.csv").write_text("1::1::5::978300760\n2::1::4::978300761\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Animation\n")
    with pytest.raises(data.SchemaError, match="convert-ml1m"):
        data.load_movielens(tmp_path, verify=False)


# ---- the derived data set (CI's second run) -----------------------------------------------

@pytest.fixture(scope="module")
def derived(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("derived") / "ml-derived"
    note = data.derive(out, seed=0, source=data_dir)
    return out, note


def test_derived_is_other_data_in_the_layout(derived, data_dir, ml):
    out, note = derived
    assert not (out / "tags.csv").exists()
    assert config.reference_data(out) is False and config.reference_data(data_dir) is True
    with pytest.raises(data.ChecksumError):
        data.load_movielens(out)
    d = data.load_movielens(out, verify=False)
    assert len(d.tags) == 0 and note["tag_rows"] == 0
    assert json.loads((out / data.DERIVED_NOTE).read_text()) == note

    # users: a subset of about 80% drawn, fewer once the early ratings go
    users, ref_users = set(d.ratings["user_id"]), set(ml.ratings["user_id"])
    assert users < ref_users and note["drawn_users"] == round(0.8 * len(ref_users))
    assert note["users"] == len(users) < note["drawn_users"]
    # time window: the earliest 10% of the drawn users' ratings are gone
    drawn = ml.ratings[ml.ratings["user_id"].isin(users)]
    assert d.ratings["timestamp"].min() == note["start_timestamp"] > ml.ratings["timestamp"].min()
    start_share = (ml.ratings["timestamp"] < note["start_timestamp"]).mean()
    assert 0.05 < start_share < 0.2
    # every kept rating is a reference rating, unchanged
    key = ["user_id", "item_id", "timestamp"]
    merged = d.ratings.merge(drawn, on=key, suffixes=("", "_ref"))
    assert len(merged) == len(d.ratings) and (merged["rating"] == merged["rating_ref"]).all()
    # the catalogue: only movies still rated, links for exactly those
    assert set(d.item_ids) == set(d.ratings["item_id"]) and len(d.item_ids) < len(ml.item_ids)
    assert set(d.links["item_id"]) == set(d.item_ids)
    ref_titles = ml.movies.set_index("item_id")["title"]
    assert (d.movies.set_index("item_id")["title"] == ref_titles[d.item_ids]).all()
    # the book's split runs on it and gives other numbers
    s = data.per_user_split(d.ratings).summary()
    assert 0 < s["test_users"] < 590


def test_derive_is_deterministic_by_seed(derived, tmp_path, data_dir):
    out, _ = derived
    again = data.derive(tmp_path / "again", seed=0, source=data_dir)
    other = data.derive(tmp_path / "other", seed=1, source=data_dir)
    for name in ("ratings.csv", "movies.csv", "links.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    assert (tmp_path / "other" / "ratings.csv").read_bytes() != (out / "ratings.csv").read_bytes()
    assert again["users"] != other["users"] or again["ratings"] != other["ratings"]


def test_derive_options_and_refusals(tmp_path, copy, data_dir):
    note = data.derive(tmp_path / "full", seed=3, source=data_dir, user_frac=1.0,
                       drop_earliest=0.0, tags=True, prune_movies=False)
    d = data.load_movielens(tmp_path / "full", verify=False)
    # all users, all time, tags and the whole catalogue: the reference's content again
    assert (note["users"], note["ratings"], note["movies"], note["tag_rows"]) == (
        610, 100836, 9742, 3683)
    assert len(d.tags) == 3683
    with pytest.raises(ValueError, match="user_frac"):
        data.derive(tmp_path / "x", user_frac=0)
    with pytest.raises(ValueError, match="overwrite its source"):
        data.derive(copy, source=copy)
    _append(copy / "ratings.csv", "1,2,5.0,964982704\n")
    with pytest.raises(data.ChecksumError):
        data.derive(tmp_path / "y", source=copy)  # it derives from the reference only...
    assert data.derive(tmp_path / "y", source=copy, verify=False)["ratings"] > 0  # ...unless told


def test_derive_can_drop_rarely_rated_movies(derived, tmp_path, data_dir):
    _, base = derived
    note = data.derive(tmp_path / "min2", seed=0, source=data_dir, min_movie_ratings=2)
    d = data.load_movielens(tmp_path / "min2", verify=False)
    counts = d.ratings["item_id"].value_counts()
    # every movie left has at least 2 ratings in the window, and the catalogue is just those
    assert counts.min() >= 2 and set(d.item_ids) == set(counts.index)
    # the same users and window; only the once-rated movies (and their ratings) went
    assert note["drawn_users"] == base["drawn_users"]
    assert note["start_timestamp"] == base["start_timestamp"]
    assert note["movies"] < 0.7 * base["movies"] and note["ratings"] < base["ratings"]
    assert note["min_movie_ratings"] == 2 and "--min-movie-ratings 2" in note["command"]
    with pytest.raises(ValueError, match="min_movie_ratings"):
        data.derive(tmp_path / "bad", source=data_dir, min_movie_ratings=0)


def test_derive_on_the_command_line(tmp_path, data_dir, capsys):
    out = tmp_path / "cli"
    assert data.main(["derive", "--out", str(out), "--seed", "0", "--source", str(data_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"LLMREC_DATA_DIR={out} {ENV}=0" in printed
    note = json.loads((out / data.DERIVED_NOTE).read_text())
    assert note["seed"] == 0 and note["user_frac"] == 0.8 and note["drop_earliest"] == 0.1
    assert data.main(["derive", "--out", str(tmp_path / "z"), "--users", "1.5",
                      "--source", str(data_dir)]) == 1
    assert "user_frac" in capsys.readouterr().err


def test_verify_command_says_which_data(derived, data_dir, monkeypatch, capsys):
    out, _ = derived
    assert data.main(["verify", str(data_dir)]) == 0
    assert "verified: the 2018 release" in capsys.readouterr().out
    assert data.main(["verify", str(out)]) == 1
    assert f"{ENV}=0" in capsys.readouterr().err
    monkeypatch.setenv(ENV, "0")
    assert data.main(["verify", str(out)]) == 0
    assert "not the reference release" in capsys.readouterr().out


# ---- MovieLens 1M ---------------------------------------------------------------------------

def _ml1m(folder):
    """A tiny folder in MovieLens 1M's layout: '::'-separated, latin-1, no header rows."""
    folder.mkdir()
    (folder / "movies.dat").write_bytes("\n".join([
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "2::Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)::Comedy|Romance",
        '3::"Great" Escape, The (1963)::Adventure|War',
        "4::Misérables, Les (1995)::Drama",
    ]).encode("latin-1") + b"\n")
    (folder / "ratings.dat").write_bytes(b"".join(
        f"{u}::{m}::{r}::{978300760 + 10 * u + m}\n".encode()
        for u, m, r in [(1, 1, 5), (1, 2, 3), (1, 3, 4), (2, 1, 1), (2, 4, 5), (3, 2, 4)]))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def test_convert_ml1m(tmp_path):
    src = _ml1m(tmp_path / "ml-1m")
    note = data.convert_ml1m(src, tmp_path / "ml-1m-csv")
    dst = tmp_path / "ml-1m-csv"
    assert (note["users"], note["movies"], note["ratings"]) == (3, 4, 6)
    assert sorted(p.name for p in dst.iterdir()) == ["DERIVED.json", "movies.csv", "ratings.csv"]
    assert (dst / "ratings.csv").read_text().splitlines()[:2] == [
        "userId,movieId,rating,timestamp", "1,1,5.0,978300771"]
    ml = data.load_movielens(dst, verify=False)
    assert ml.n_users == 3 and len(ml.ratings) == 6 and len(ml.tags) == 0
    assert ml.ratings["rating"].tolist() == [5.0, 3.0, 4.0, 1.0, 5.0, 4.0]
    movies = ml.movies.set_index("item_id")
    assert movies.loc[2, "title"].startswith("Amélie (Fabuleux")  # latin-1 read, UTF-8 written
    assert movies.loc[3, "name"] == 'The "Great" Escape' and movies.loc[3, "year"] == 1963
    assert movies.loc[4, "name"] == "Les Misérables"
    assert movies.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert config.reference_data(dst) is False


def test_convert_ml1m_on_the_command_line(tmp_path, capsys):
    src = _ml1m(tmp_path / "ml-1m")
    assert data.main(["convert-ml1m", str(src), str(tmp_path / "out")]) == 0
    assert "3 users, 4 movies, 6 ratings" in capsys.readouterr().out
    assert data.main(["convert-ml1m", str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 1
    assert "ratings.dat" in capsys.readouterr().err


def test_convert_ml1m_names_a_bad_line(tmp_path):
    src = _ml1m(tmp_path / "ml-1m")
    _append(src / "ratings.dat", "4::1::5\n")
    with pytest.raises(data.SchemaError, match=r"ratings.dat, line 7: expected 4 fields"):
        data.convert_ml1m(src, tmp_path / "out")
    (src / "ratings.dat").write_text("1::1::five::978300760\n")
    with pytest.raises(data.SchemaError, match="'rating'"):
        data.convert_ml1m(src, tmp_path / "out")


def test_convert_ml10m_style_tags(tmp_path):
    src = _ml1m(tmp_path / "ml-10m")
    (src / "tags.dat").write_text("1::1::pixar::978300800\n2::4::musical, not really::978300900\n")
    data.convert_ml1m(src, tmp_path / "out")
    ml = data.load_movielens(tmp_path / "out", verify=False)
    assert ml.tags["tag"].tolist() == ["pixar", "musical, not really"]
    assert pd.api.types.is_integer_dtype(ml.tags["timestamp"])


def test_the_closing_report_shows_the_data_and_refuses_a_failure_on_the_reference(
        tmp_path, data_dir, copy, capsys):
    _append(copy / "ratings.csv", "1,2,5.0,964982704\n")  # no longer the reference release
    elsewhere = config.Claims("03", path=copy)
    elsewhere.check("beats popularity", False)
    table = elsewhere.report()
    assert table["holds here"].tolist() == ["no"]
    assert capsys.readouterr().out.strip() == config.data_status(copy)
    on_ref = config.Claims("00", path=data_dir)
    with pytest.raises(AssertionError):
        on_ref.check("610 users", False)
    with pytest.raises(AssertionError, match="claims fail on the reference release: 610 users"):
        on_ref.report()  # a failure recorded without stopping the chapter is still caught


def test_claims_tables_are_kept_and_summarized(tmp_path):
    other = config.Claims("03", reference=False)
    other.check("beats popularity", False)
    other.check("loss falls", True, pinned=False)
    other.skip("the committed adapter beats item-kNN", "needs the committed adapter")
    other.table()
    ref = config.Claims("00", reference=True)
    ref.check("610 users", True)
    ref.table()
    summary = config.claims_summary()
    assert summary.to_dict("records") == [
        {"chapter": "00", "claims": 1, "hold": 1, "fail": 0, "not tested": 0, "data": "reference"},
        {"chapter": "03", "claims": 3, "hold": 1, "fail": 1, "not tested": 1, "data": "other"},
    ]
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "llmrec_lib.config", "claims",
                          str(tmp_path / "results")],
                         capture_output=True, text=True, check=True, cwd=config.PROJECT_ROOT)
    assert "not tested" in out.stdout and out.stderr == ""


# ---- every chapter runs on other data ------------------------------------------------------

CHAPTERS = sorted((config.PROJECT_ROOT / "chapters").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_reports_which_claims_hold(path):
    """Each chapter takes the verify_data parameter, checks its claims through config.Claims
    and ends with the table of which hold (make test-derived proves it runs on other data)."""
    src = path.read_text()
    assert "verify_data = None" in src, f"{path.name}: no verify_data parameter"
    assert f'config.Claims("{path.stem[:2]}"' in src, f"{path.name}: no config.Claims"
    assert "## Which claims hold on this data" in src and "claims.report()" in src


def test_ci_runs_every_chapter_on_the_derived_data():
    makefile = (config.PROJECT_ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("DERIVED_CHAPTERS"))
    listed = set(line.split("=", 1)[1].split())
    assert listed == {p.stem[:2] for p in CHAPTERS}, f"make test-derived runs only {sorted(listed)}"
