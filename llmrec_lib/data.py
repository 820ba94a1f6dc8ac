"""MovieLens loading, checksums and the train / validation / test splits.

Every chapter evaluates on the same split, built here once:

* :func:`load_movielens` reads the four ml-latest-small CSVs into typed DataFrames, checks
  each file's SHA-256 against the manifest kept in ``data/`` (line endings normalised, so the
  CRLF copies in ``../shared`` and an official LF download hash the same) and validates
  columns, values and ids, failing with an error that says what to do. With the checksum off
  (``LLMREC_DATA_VERIFY=0``, read by :func:`llmrec_lib.config.data_verify`) it loads any data
  in the same layout; ``tags.csv`` and ``links.csv`` may then be missing or empty.
* :func:`derive` writes a copy of the reference with other users, a later time window and no
  tags (CI's second run); :func:`convert_ml1m` turns MovieLens 1M's ``.dat`` files into this
  layout. Both are on the command line: ``python -m llmrec_lib.data --help``.
* :func:`per_user_split` (the default) holds out each user's last positives in time.
* :func:`global_split` cuts the whole timeline once; chapter 00 shows why it is not the
  default on this data.

Positives are ratings >= 4.0; ratings <= 2.0 are "seen but disliked", the book's stand-in for
impressions without engagement. Those thresholds, the time order, the tie rule and the column
check are defined in :mod:`llmrec_lib.interactions` and re-exported here.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .interactions import (  # noqa: F401  (re-exported: the data layer's many callers use them)
    NEGATIVE_MAX,
    POSITIVE_MIN,
    RATING_COLUMNS,
    DataError,
    SchemaError,
    in_time_order,
    require_columns,
)

FILES = ("links.csv", "movies.csv", "ratings.csv", "tags.csv")
REQUIRED = ("ratings.csv", "movies.csv")  # tags.csv and links.csv may be absent or empty
OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
MANIFEST = config.PROJECT_ROOT / "data" / "ml-latest-small.sha256"

_COLUMNS = {
    "ratings.csv": ("userId", "movieId", "rating", "timestamp"),
    "movies.csv": ("movieId", "title", "genres"),
    "tags.csv": ("userId", "movieId", "tag", "timestamp"),
    "links.csv": ("movieId", "imdbId", "tmdbId"),
}
_ARTICLES = ("The", "A", "An", "La", "Le", "Les", "L'", "Il", "Das", "Der", "Die", "El", "Los")
_YEAR_RE = re.compile(r"\((\d{4})(?:[-\u2013]\d{0,4})?\)\s*$")
_NAME_ARTICLE_RE = re.compile(r"^(.*), (" + "|".join(re.escape(a) for a in _ARTICLES) + r")$")


class DataNotFoundError(DataError, FileNotFoundError):
    """The data folder or one of its files is missing; the message says how to get it (``python -m
    llmrec_lib.data download``) or where to point ``LLMREC_DATA_DIR``.
    """
    pass


class ChecksumError(DataError):
    """A CSV differs from the manifest: not the reference release. Set ``LLMREC_DATA_VERIFY=0`` to
    run on it knowingly.
    """
    pass


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a text file with CRLF normalised to LF.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: str | Path = MANIFEST) -> dict[str, str]:
    """The checksum manifest (``sha256  name`` lines, ``#`` comments) as name -> digest.

    Args:
        path: the manifest (default: the reference release's, in ``data/``).

    Returns:
        file name -> hex SHA-256.
    """
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            digest, name = line.split()
            out[name] = digest
    return out


def verify_files(folder: str | Path, manifest: str | Path = MANIFEST) -> None:
    """Raise :class:`ChecksumError` if any CSV differs from the manifest.

    Args:
        folder: the data folder.
        manifest: the checksum manifest.
    """
    expected = read_manifest(manifest)
    bad = []
    for name, digest in expected.items():
        path = Path(folder) / name
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif path.stat().st_size == 0:
            bad.append(f"{name}: empty (0 bytes)")
        elif (got := file_sha256(path)) != digest:
            bad.append(f"{name}: expected {digest[:12]}..., got {got[:12]}...")
    if bad:
        raise ChecksumError(
            f"Checksum mismatch in {folder}: " + "; ".join(bad) + ". The files are not the "
            "2018 ml-latest-small release the book's numbers come from. Re-download them with "
            "`make data`, or, if this is your own data in the same layout, set "
            f"{config.DATA_VERIFY_ENV}=0 (the whole book then runs on it and reports, rather than "
            "asserts, the claims pinned to the reference numbers) or load it with "
            "load_movielens(path, verify=False)."
        )


_REFERENCE_CACHE: dict[tuple, bool] = {}


def is_reference(folder: str | Path, manifest: str | Path = MANIFEST) -> bool:
    """True when ``folder`` holds every CSV of the manifest with the manifest's checksum (the
    2018 release), False otherwise, never an error. Cached per folder, file size and mtime.
    :func:`llmrec_lib.config.reference_data` is the chapters' way to ask.

    Args:
        folder: the data folder.
        manifest: the checksum manifest.

    Returns:
        Whether the folder holds the reference release.
    """
    folder = Path(folder).expanduser()
    expected = read_manifest(manifest)
    stats = []
    for name in sorted(expected):
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            return False
        stats.append((name, st.st_size, st.st_mtime_ns))
    key = (str(Path(manifest).resolve()), str(folder.resolve()), tuple(stats))
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = all(
            file_sha256(folder / name) == digest for name, digest in expected.items())
    return _REFERENCE_CACHE[key]


def _resolve_folder(path: str | Path | None) -> Path:
    folder = config.data_dir(path)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"MovieLens folder not found: {folder}. Either run `make data` (downloads the official "
            f"GroupLens zip and verifies it), or point LLMREC_DATA_DIR at a folder holding "
            f"{', '.join(FILES)} (for example ../shared/data/ml-latest-small)."
        )
    missing = [n for n in REQUIRED if not (folder / n).is_file()]
    if missing:
        layout = "; ".join(f"{n}: {', '.join(_COLUMNS[n])}" for n in REQUIRED)
        hint = ""
        if any((folder / n).is_file() for n in ("ratings.dat", "movies.dat")):
            hint = (f" {folder} holds MovieLens .dat files: convert them first with "
                    f"`python -m llmrec_lib.data convert-ml1m {folder} NEW_FOLDER`.")
        raise DataNotFoundError(
            f"{folder} lacks {', '.join(missing)}. Run `make data` or set LLMREC_DATA_DIR to a "
            "complete ml-latest-small folder. For your own data, write the two required files "
            f"in the ml-latest-small layout, with a header row ({layout}); tags.csv and "
            f"links.csv are optional with {config.DATA_VERIFY_ENV}=0.{hint}"
        )
    return folder


def _read_csv(path: Path, name: str) -> pd.DataFrame:
    want = _COLUMNS[name]
    optional = name in ("tags.csv", "links.csv")  # the loader runs without these two
    restore = (
        "Restore it from the 2018 ml-latest-small release (`make data` downloads and verifies "
        "it), or, for your own data, write it in the ml-latest-small layout "
        f"({', '.join(want)}, with a header row)"
        + (f"; {name} is optional, so deleting it loads the other files without it." if optional else ".")
    )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise SchemaError(f"{path} is empty (no header, no rows): the file was truncated or "
                          f"not copied. {restore}") from exc
    except pd.errors.ParserError as exc:
        raise SchemaError(f"{path} cannot be parsed as CSV ({str(exc).strip()}): the file is cut "
                          f"short or corrupted, e.g. it ends inside a quoted field. {restore}") from exc
    missing = [c for c in want if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) == 1:
            head = str(df.columns[0])
            if "::" in head:
                hint = (" The file uses '::' as separator, like MovieLens 1M's .dat files: "
                        "convert them with `python -m llmrec_lib.data convert-ml1m SRC DST`.")
            elif any(sep in head for sep in ("\t", ";", "|")):
                hint = " The file seems to use another separator: write it comma-separated."
        raise SchemaError(
            f"{path} has no column(s) {missing} (found {list(df.columns)}). The loader expects the "
            f"ml-latest-small layout for {name}: a header row with {', '.join(want)} "
            f"(comma-separated; other columns are ignored).{hint}"
        )
    return df


def _numeric(df: pd.DataFrame, col: str, path: Path, kind: str = "int") -> pd.Series:
    values = pd.to_numeric(df[col].str.strip(), errors="coerce")
    bad = values.isna()
    if kind == "int":
        bad |= values.notna() & (values != values.round())
    if bad.any():
        rows = (np.flatnonzero(bad.to_numpy())[:5] + 2).tolist()  # +2: header, 1-based
        raise SchemaError(
            f"{path}: malformed value(s) in column {col!r} at line(s) {rows} "
            f"(e.g. {df[col][bad].iloc[0]!r}). Fix or remove those rows."
        )
    return values.astype("int64") if kind == "int" else values.astype("float32")


def parse_title(title: str) -> tuple[str, int | None]:
    """'Matrix, The (1999)' -> ('The Matrix', 1999). Titles without a year give None.

    Args:
        title: a MovieLens title, "Name, The (year)".

    Returns:
        (name with its article in front, year or None).
    """
    title = title.strip()
    match = _YEAR_RE.search(title)
    year = int(match.group(1)) if match else None
    name = title[: match.start()].strip() if match else title
    art = _NAME_ARTICLE_RE.match(name)
    if art:
        sep = "" if art.group(2).endswith("'") else " "
        name = f"{art.group(2)}{sep}{art.group(1)}"
    return name, year


@dataclass
class MovieLens:
    """The ml-latest-small tables, typed. ``item_ids`` is the catalogue in column order."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    tags: pd.DataFrame  # no rows when the data has no tags.csv
    links: pd.DataFrame  # no rows when the data has no links.csv
    path: Path
    item_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.item_ids = np.sort(self.movies["item_id"].to_numpy())

    @property
    def n_users(self) -> int:
        """Users with at least one rating."""
        return int(self.ratings["user_id"].nunique())

    def item_index(self) -> pd.Series:
        """item_id -> column index in :attr:`item_ids`."""
        return pd.Series(np.arange(len(self.item_ids)), index=self.item_ids)

    def summary(self) -> dict:
        """Counts of users, movies, ratings and tags and the time span, as a dict for a chapter's
        record.
        """
        r = self.ratings
        return {
            "users": self.n_users,
            "movies": int(len(self.movies)),
            "ratings": int(len(r)),
            "tags": int(len(self.tags)),
            "first": str(pd.to_datetime(r["timestamp"].min(), unit="s").date()),
            "last": str(pd.to_datetime(r["timestamp"].max(), unit="s").date()),
            "positive_share": float((r["rating"] >= POSITIVE_MIN).mean()),
            "disliked_share": float((r["rating"] <= NEGATIVE_MAX).mean()),
        }


def load_movielens(path: str | Path | None = None, verify: bool | None = None) -> MovieLens:
    """Load ml-latest-small from ``path`` (else ``LLMREC_DATA_DIR``, else ``data/``).

    ``verify=False`` skips the checksum check, for a reader's own data in the same layout;
    ``verify=None`` (the default) follows ``LLMREC_DATA_VERIFY`` (:func:`config.data_verify`:
    on unless set to 0). The column, value and id checks always run. Unverified, ``tags.csv``
    and ``links.csv`` may be missing or empty (0 bytes, or a header only): they load as empty
    tables with the usual columns. ``ratings.csv`` and ``movies.csv`` are always required.

    Args:
        path: the data folder.
        verify: check the checksums (None: ``LLMREC_DATA_VERIFY``).

    Returns:
        The :class:`MovieLens` tables, checked.
    """
    verify = config.data_verify(verify)
    folder = _resolve_folder(path)
    if verify:
        verify_files(folder)

    movies = _load_movies(folder / "movies.csv")
    known = set(movies["item_id"].tolist())
    ratings = _load_ratings(folder / "ratings.csv", known)
    tags = _load_tags(folder / "tags.csv", known)
    links = _load_links(folder / "links.csv")
    ratings = in_time_order(ratings)
    return MovieLens(ratings=ratings, movies=movies, tags=tags, links=links, path=folder)


def _load_movies(p: Path) -> pd.DataFrame:
    """movies.csv as item_id, title, name, year, genres (a list), sorted by id; ids unique."""
    m = _read_csv(p, "movies.csv")
    item_id = _numeric(m, "movieId", p)
    if item_id.duplicated().any():
        dup = item_id[item_id.duplicated()].iloc[0]
        raise SchemaError(f"{p}: movieId {dup} appears twice. Each movie needs one row.")
    parsed = [parse_title(t) for t in m["title"]]
    genres = [[] if g in ("(no genres listed)", "") else g.split("|") for g in m["genres"]]
    return pd.DataFrame(
        {
            "item_id": item_id,
            "title": m["title"].str.strip(),
            "name": [n for n, _ in parsed],
            "year": pd.array([y for _, y in parsed], dtype="Int64"),
            "genres": genres,
        }
    ).sort_values("item_id", ignore_index=True)


def _load_ratings(p: Path, known: set) -> pd.DataFrame:
    """ratings.csv as user_id, item_id, rating, timestamp; stars on the 0.5-5 scale and every
    movie in the catalogue."""
    r = _read_csv(p, "ratings.csv")
    ratings = pd.DataFrame(
        {
            "user_id": _numeric(r, "userId", p),
            "item_id": _numeric(r, "movieId", p),
            "rating": _numeric(r, "rating", p, kind="float"),
            "timestamp": _numeric(r, "timestamp", p),
        }
    )
    out_of_range = ~ratings["rating"].between(0.5, 5.0)
    if out_of_range.any():
        line = int(np.flatnonzero(out_of_range.to_numpy())[0]) + 2
        raise SchemaError(
            f"{p}: rating {ratings['rating'][out_of_range].iloc[0]} at line {line} is outside "
            "0.5-5.0 (the MovieLens star scale). Fix or remove the row."
        )
    _check_ids(ratings, known, p)
    return ratings


def _load_tags(p: Path, known: set) -> pd.DataFrame:
    """tags.csv as user_id, item_id, tag, timestamp; an empty table when the file is absent or
    empty (allowed only unverified: the checksum check requires it)."""
    if not _present(p):
        return empty_tags()
    t = _read_csv(p, "tags.csv")
    tags = pd.DataFrame(
        {
            "user_id": _numeric(t, "userId", p),
            "item_id": _numeric(t, "movieId", p),
            "tag": t["tag"].str.strip(),
            "timestamp": _numeric(t, "timestamp", p),
        }
    )
    _check_ids(tags, known, p)
    return tags


def _load_links(p: Path) -> pd.DataFrame:
    """links.csv as item_id, imdb_id, tmdb_id; an empty table when absent or empty."""
    if not _present(p):
        return empty_links()
    lk = _read_csv(p, "links.csv")
    return pd.DataFrame({"item_id": _numeric(lk, "movieId", p), "imdb_id": lk["imdbId"],
                         "tmdb_id": lk["tmdbId"]})


def _present(path: Path) -> bool:
    """An optional file (tags.csv, links.csv) that exists and is not 0 bytes (whitespace only
    counts as empty). With checksums on, a missing or empty one has already failed."""
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return bool(fh.read(4096).strip())


def empty_tags() -> pd.DataFrame:
    """The tags table of a data set without tags: no rows, the usual columns and types.

    Returns:
        An empty frame with user_id, item_id, tag and timestamp.
    """
    return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64"),
                         "tag": pd.Series(dtype="object"), "timestamp": pd.Series(dtype="int64")})


def empty_links() -> pd.DataFrame:
    """The links table of a data set without links.csv.

    Returns:
        An empty frame with item_id, imdb_id and tmdb_id.
    """
    return pd.DataFrame({"item_id": pd.Series(dtype="int64"), "imdb_id": pd.Series(dtype="object"),
                         "tmdb_id": pd.Series(dtype="object")})


def _check_ids(df: pd.DataFrame, known: set, path: Path) -> None:
    unknown = ~df["item_id"].isin(known)
    if unknown.any():
        ids = sorted(set(df["item_id"][unknown].tolist()))[:5]
        raise SchemaError(
            f"{path}: {int(unknown.sum())} row(s) refer to movieId(s) not in movies.csv, e.g. {ids}. "
            "Add those movies to movies.csv or drop the rows: the book cannot describe an item "
            "it has no text for."
        )


def download(dest: str | Path | None = None, url: str = OFFICIAL_URL) -> Path:
    """Download the official GroupLens zip into ``dest`` and verify it (needs internet).

    Args:
        dest: the data folder to create (default :func:`config.data_dir`).
        url: the zip's address.

    Returns:
        The folder, verified.
    """
    import urllib.request

    folder = config.data_dir(dest)
    folder.parent.mkdir(parents=True, exist_ok=True)
    archive = folder.parent / "ml-latest-small.zip"
    try:
        urllib.request.urlretrieve(url, archive)
    except OSError as exc:
        raise DataNotFoundError(
            f"Could not download {url} ({exc}). Without internet, copy the ml-latest-small folder "
            "by hand and set LLMREC_DATA_DIR to it."
        ) from exc
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder.parent)
    verify_files(folder)
    return folder


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------

STAGES = ("valid", "test")


@dataclass
class Split:
    """Train ratings, two target windows, and what each stage may see as input.

    ``train`` holds every rating models may learn from. For stage ``"valid"`` the input
    history of a user is their ``train`` rows; for ``"test"`` it is ``train`` plus their
    validation window (all ratings, not only positives). Targets are the positives inside a
    stage's window; ``is_cold`` marks items nobody rated in ``train``.
    """

    name: str
    train: pd.DataFrame
    valid_window: pd.DataFrame
    test_window: pd.DataFrame
    params: dict
    _targets: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        warm = set(self.train["item_id"].tolist())
        for stage, window in (("valid", self.valid_window), ("test", self.test_window)):
            pos = window[window["rating"] >= POSITIVE_MIN]
            # A stage needs at least one positive in the input history to say anything about
            # a user: drop targets of users who have none (counted in summary()).
            hist = self.history(stage)
            has_pos = set(hist.loc[hist["rating"] >= POSITIVE_MIN, "user_id"].tolist())
            pos = pos[pos["user_id"].isin(has_pos)]
            t = pos[["user_id", "item_id", "rating", "timestamp"]].reset_index(drop=True)
            t["is_cold"] = ~t["item_id"].isin(warm)
            self._targets[stage] = t

    def _check(self, stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")

    def targets(self, stage: str) -> pd.DataFrame:
        """The stage's target ratings (valid or test): what its users are evaluated on."""
        self._check(stage)
        return self._targets[stage]

    def users(self, stage: str) -> np.ndarray:
        """The sorted ids of the users with a target in ``stage``."""
        return np.sort(self.targets(stage)["user_id"].unique())

    def history(self, stage: str) -> pd.DataFrame:
        """Ratings visible as input when predicting ``stage``, sorted by user and time."""
        self._check(stage)
        if stage == "valid":
            return self.train
        both = pd.concat([self.train, self.valid_window], ignore_index=True)
        return in_time_order(both)

    def summary(self) -> dict:
        """Counts of the training ratings, users and items and, per stage, of targets, users and
        history, as a dict for a chapter's record.
        """
        out = {"split": self.name, "train_ratings": int(len(self.train)),
               "train_users": int(self.train["user_id"].nunique()),
               "train_items": int(self.train["item_id"].nunique())}
        for stage in STAGES:
            t = self.targets(stage)
            hist = self.history(stage)
            users = t["user_id"].unique()
            n_hist = hist[hist["user_id"].isin(users)].groupby("user_id").size()
            out[f"{stage}_users"] = int(len(users))
            out[f"{stage}_targets"] = int(len(t))
            out[f"{stage}_cold_targets"] = int(t["is_cold"].sum())
            out[f"{stage}_median_history"] = float(n_hist.median()) if len(n_hist) else 0.0
        return out


def _round_share(frac: float, n: np.ndarray) -> np.ndarray:
    # floor(x + 0.5) with a small epsilon: 0.1 * 30 is 3.0000000000000004 in floating point.
    return np.maximum(1, np.floor(frac * n + 0.5 - 1e-9)).astype(int)


def per_user_split(
    ratings: pd.DataFrame,
    test_frac: float = 0.2,
    valid_frac: float = 0.1,
    min_positives: int = 5,
) -> Split:
    """Each user's last ``test_frac`` of positives are test targets, the ``valid_frac``
    before them validation targets.

    Boundaries are timestamps, so a batch of ratings with the same timestamp never straddles
    history and target: everything a user rated at or after their first test target's time is
    in the test window. Users with fewer than ``min_positives`` positives stay whole in
    ``train``. Deterministic: ties in time are ordered by item id.

    Args:
        ratings: all ratings (``MovieLens.ratings``).
        test_frac: each user's share of positives that are test targets.
        valid_frac: the share before them that are validation targets.
        min_positives: users with fewer positives are not evaluated.

    Returns:
        The :class:`Split`.
    """
    if not 0 < test_frac < 1 or not 0 < valid_frac < 1 or test_frac + valid_frac >= 1:
        raise ValueError("need 0 < test_frac, valid_frac and test_frac + valid_frac < 1")
    require_columns(ratings, RATING_COLUMNS, "ratings", "Pass MovieLens.ratings from load_movielens.")
    r = in_time_order(ratings)
    pos = r[r["rating"] >= POSITIVE_MIN]
    n_pos = pos.groupby("user_id").size()
    eligible = n_pos[n_pos >= min_positives]
    n_test = pd.Series(_round_share(test_frac, eligible.to_numpy()), index=eligible.index)
    n_valid = pd.Series(_round_share(valid_frac, eligible.to_numpy()), index=eligible.index)

    pos = pos[pos["user_id"].isin(eligible.index)].copy()
    pos["rank_from_end"] = pos.groupby("user_id").cumcount(ascending=False)  # 0 = last
    # first test target: the positive with rank_from_end == n_test - 1
    first_test = pos[pos["rank_from_end"] == pos["user_id"].map(n_test) - 1]
    t_test = first_test.set_index("user_id")["timestamp"]
    first_valid = pos[pos["rank_from_end"] == pos["user_id"].map(n_test + n_valid) - 1]
    t_valid = first_valid.set_index("user_id")["timestamp"]

    big = np.iinfo(np.int64).max
    tt = r["user_id"].map(t_test).fillna(big).astype("int64")
    tv = r["user_id"].map(t_valid).fillna(big).astype("int64")
    ts = r["timestamp"]
    in_test = ts >= tt
    in_valid = (ts >= tv) & ~in_test
    train = r[~in_test & ~in_valid].reset_index(drop=True)
    return Split(
        name="per_user",
        train=train,
        valid_window=r[in_valid].reset_index(drop=True),
        test_window=r[in_test].reset_index(drop=True),
        params={"test_frac": test_frac, "valid_frac": valid_frac, "min_positives": min_positives},
    )


def global_split(ratings: pd.DataFrame, quantile: float = 0.9, valid_quantile: float = 0.8) -> Split:
    """One timeline for everybody: test = ratings at or after the ``quantile`` of all
    timestamps, validation = between ``valid_quantile`` and ``quantile``, train = before.

    Args:
        ratings: all ratings (``MovieLens.ratings``).
        quantile: the test cut-off's quantile of all timestamps.
        valid_quantile: the validation cut-off's (below ``quantile``).

    Returns:
        The :class:`Split`.
    """
    if not 0 < valid_quantile < quantile < 1:
        raise ValueError("need 0 < valid_quantile < quantile < 1")
    require_columns(ratings, RATING_COLUMNS, "ratings", "Pass MovieLens.ratings from load_movielens.")
    r = in_time_order(ratings)
    cut_test = int(np.quantile(r["timestamp"], quantile))
    cut_valid = int(np.quantile(r["timestamp"], valid_quantile))
    ts = r["timestamp"]
    return Split(
        name="global",
        train=r[ts < cut_valid].reset_index(drop=True),
        valid_window=r[(ts >= cut_valid) & (ts < cut_test)].reset_index(drop=True),
        test_window=r[ts >= cut_test].reset_index(drop=True),
        params={"quantile": quantile, "valid_quantile": valid_quantile,
                "cut_test": cut_test, "cut_valid": cut_valid},
    )






def window_users_without_history(split: Split, stage: str = "test") -> dict:
    """How many users rated something in the stage's window, and how many of them had no
    rating at all before it (the reason the global cutoff starves this data set).

    Args:
        split: the split.
        stage: "valid" or "test".

    Returns:
        {"window_users", "without_history", ...}: counts.
    """
    window = split.test_window if stage == "test" else split.valid_window
    hist_users = set(split.history(stage)["user_id"].tolist())
    pos_users = set(window.loc[window["rating"] >= POSITIVE_MIN, "user_id"].tolist())
    return {
        "window_users": len(pos_users),
        "without_history": len(pos_users - hist_users),
        "evaluable_users": len(split.users(stage)),
    }


def future_share(split: Split, stage: str = "test") -> pd.Series:
    """For each evaluated user, the share of ``train`` ratings (by other users) made later
    than that user's first target: the price of a per-user split, measured rather than hidden.
    Zero for a global split by construction.

    Args:
        split: the split.
        stage: "valid" or "test".

    Returns:
        user_id -> share in [0, 1].
    """
    t = split.targets(stage)
    first = t.groupby("user_id")["timestamp"].min()
    train = split.train
    ts_sorted = np.sort(train["timestamp"].to_numpy())
    own = train.groupby("user_id")["timestamp"].apply(np.sort)
    shares = {}
    for user, t0 in first.items():
        later_all = len(ts_sorted) - np.searchsorted(ts_sorted, t0, side="right")
        mine = own.get(user, np.empty(0, dtype=np.int64))
        later_own = len(mine) - np.searchsorted(mine, t0, side="right")
        others = len(ts_sorted) - len(mine)
        shares[user] = (later_all - later_own) / max(others, 1)
    return pd.Series(shares, name="future_share").rename_axis("user_id")


# --------------------------------------------------------------------------------------
# Other data in the same layout: a derived copy for CI, MovieLens 1M
# --------------------------------------------------------------------------------------

DERIVED_NOTE = "DERIVED.json"  # written next to a derived or converted data set's CSVs


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, lineterminator="\n")


def _derived_window(r: pd.DataFrame, src: Path, kept_users: np.ndarray,
                    drop_earliest: float) -> tuple[pd.Series, int | None]:
    """Rows of the kept users at or after the ``drop_earliest`` quantile of their timestamps
    (a mask over ``r``), and that start timestamp (None when nothing is dropped)."""
    mask = _numeric(r, "userId", src / "ratings.csv").isin(kept_users)
    r_time = _numeric(r, "timestamp", src / "ratings.csv")
    start = int(np.quantile(r_time[mask], drop_earliest, method="lower")) if drop_earliest else None
    if start is not None:
        mask &= r_time >= start
    return mask, start


def _rated_often_enough(r: pd.DataFrame, src: Path, mask: pd.Series, min_ratings: int) -> pd.Series:
    """A mask over ``r``: the rows whose movie has at least ``min_ratings`` rows in ``mask``
    (all True when ``min_ratings`` is 1)."""
    if min_ratings <= 1:
        return pd.Series(True, index=r.index)
    r_movie = _numeric(r, "movieId", src / "ratings.csv")
    counts = r_movie[mask].value_counts()
    return r_movie.map(counts).fillna(0) >= min_ratings


def _derived_tags(src: Path, kept_users: np.ndarray, start: int | None) -> pd.DataFrame | None:
    """The kept users' tag rows in the same window, or None when the source has no tags."""
    if not _present(src / "tags.csv"):
        return None
    t = _read_csv(src / "tags.csv", "tags.csv")
    t_mask = _numeric(t, "userId", src / "tags.csv").isin(kept_users)
    if start is not None:
        t_mask &= _numeric(t, "timestamp", src / "tags.csv") >= start
    return t.loc[t_mask, list(_COLUMNS["tags.csv"])]


def _derived_movies(src: Path, ratings: pd.DataFrame, tag_rows: pd.DataFrame | None,
                    prune_movies: bool) -> pd.DataFrame:
    """The catalogue: every source movie, or with ``prune_movies`` only those still rated or
    tagged."""
    m = _read_csv(src / "movies.csv", "movies.csv")
    if prune_movies:
        used = set(_numeric(ratings, "movieId", src / "ratings.csv").tolist())
        if tag_rows is not None:
            used |= set(_numeric(tag_rows, "movieId", src / "tags.csv").tolist())
        m = m[_numeric(m, "movieId", src / "movies.csv").isin(used)]
    return m[list(_COLUMNS["movies.csv"])]


def _write_derived(out: Path, src: Path, ratings: pd.DataFrame, movies: pd.DataFrame,
                   tag_rows: pd.DataFrame | None) -> int:
    """Write the derived folder (removing stale files first); links are kept for the kept
    movies. Returns the number of links written."""
    kept_movies = set(_numeric(movies, "movieId", src / "movies.csv").tolist())
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES:  # a stale file from an earlier run must not survive
        (out / name).unlink(missing_ok=True)
    _write_csv(ratings, out / "ratings.csv")
    _write_csv(movies, out / "movies.csv")
    n_links = 0
    if _present(src / "links.csv"):
        lk = _read_csv(src / "links.csv", "links.csv")
        lk = lk[_numeric(lk, "movieId", src / "links.csv").isin(kept_movies)]
        _write_csv(lk[list(_COLUMNS["links.csv"])], out / "links.csv")
        n_links = len(lk)
    if tag_rows is not None:
        _write_csv(tag_rows, out / "tags.csv")
    return n_links


def derive(
    out: str | Path,
    seed: int = 0,
    *,
    source: str | Path | None = None,
    user_frac: float = 0.8,
    drop_earliest: float = 0.1,
    tags: bool = False,
    prune_movies: bool = True,
    min_movie_ratings: int = 1,
    verify: bool = True,
) -> dict:
    """Write a MovieLens-layout folder derived from the reference release: CI's second data set,
    which proves that no chapter hard-codes a statistic of the reference.

    * a random ``user_frac`` of the users (drawn with ``seed``);
    * a later time window: their ratings before the ``drop_earliest`` quantile of their
      timestamps are dropped (the earliest 10% by default);
    * no ``tags.csv`` unless ``tags=True`` (then the kept users' tags in the same window);
    * with ``prune_movies`` (default) only the movies still rated (or tagged), so the catalogue
      differs too; ``links.csv`` keeps the links of the kept movies;
    * with ``min_movie_ratings`` above 1, the ratings of movies rated fewer times than that in
      the window are dropped too (one pass, not a k-core), so those movies leave the catalogue:
      a smaller catalogue, as filtered data sets often are, and a cheaper one to encode.

    Values are copied as the source wrote them (no float reformatting). The same source and
    arguments give byte-identical files. ``source`` defaults to :func:`config.data_dir` and is
    checked against the checksums unless ``verify=False``. Returns what was written (also
    saved as ``DERIVED.json`` in ``out``, which the loader ignores).

    Args:
        out: the folder to write.
        seed: the seed that draws the users.
        source: the reference folder.
        user_frac: the share of users kept.
        drop_earliest: the quantile of each kept user's timestamps below which ratings drop.
        tags: write ``tags.csv`` too.
        prune_movies: keep only the movies still rated or tagged.
        min_movie_ratings: drop the ratings of movies with fewer ratings than this in the
            window (1: keep all).
        verify: check ``source`` against the checksums.

    Returns:
        The note saved as DERIVED.json: the command, the arguments and the counts written
        (users, movies, ratings, tag_rows).
    """
    if not 0 < user_frac <= 1:
        raise ValueError(f"user_frac must be in (0, 1], got {user_frac}")
    if not 0 <= drop_earliest < 1:
        raise ValueError(f"drop_earliest must be in [0, 1), got {drop_earliest}")
    if int(min_movie_ratings) != min_movie_ratings or min_movie_ratings < 1:
        raise ValueError(f"min_movie_ratings must be a whole number >= 1, got {min_movie_ratings}")
    src = _resolve_folder(source)
    if verify:
        verify_files(src)
    out = Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise ValueError(f"derive would overwrite its source {src}: choose another --out folder")

    r = _read_csv(src / "ratings.csv", "ratings.csv")
    r_user = _numeric(r, "userId", src / "ratings.csv")
    users = np.sort(r_user.unique())
    rng = np.random.default_rng(seed)
    n_keep = max(1, int(round(user_frac * len(users))))
    kept_users = np.sort(rng.choice(users, size=n_keep, replace=False))
    mask, start = _derived_window(r, src, kept_users, drop_earliest)
    mask &= _rated_often_enough(r, src, mask, min_movie_ratings)
    ratings = r.loc[mask, list(_COLUMNS["ratings.csv"])]
    tag_rows = _derived_tags(src, kept_users, start) if tags else None
    movies = _derived_movies(src, ratings, tag_rows, prune_movies)
    n_links = _write_derived(out, src, ratings, movies, tag_rows)

    note = {
        "derived_from": "ml-latest-small (2018)" if verify else config.relative_to_root(src),
        "command": "python -m llmrec_lib.data derive --out DIR " + " ".join(
            [f"--seed {seed}", f"--users {user_frac}", f"--drop-earliest {drop_earliest}"]
            + (["--with-tags"] if tags else []) + ([] if prune_movies else ["--keep-all-movies"])
            + ([f"--min-movie-ratings {min_movie_ratings}"] if min_movie_ratings > 1 else [])),
        "seed": seed, "user_frac": user_frac, "drop_earliest": drop_earliest,
        "min_movie_ratings": int(min_movie_ratings),
        "start_timestamp": start, "tags": bool(tag_rows is not None),
        "prune_movies": prune_movies,
        "users": int(r_user[mask].nunique()), "drawn_users": int(len(kept_users)),
        "source_users": int(len(users)),
        "ratings": int(len(ratings)), "source_ratings": int(len(r)),
        "movies": int(len(movies)), "links": n_links,
        "tag_rows": int(len(tag_rows)) if tag_rows is not None else 0,
        "license": "derived from MovieLens: the GroupLens license of the source applies",
    }
    import json

    (out / DERIVED_NOTE).write_text(json.dumps(note, indent=2) + "\n")
    return note


def _split_dat(line: str, n: int, path: Path, lineno: int) -> list[str]:
    parts = line.split("::")
    if len(parts) > n and n == 3:  # a title holding '::': id first, genres last
        parts = [parts[0], "::".join(parts[1:-1]), parts[-1]]
    if len(parts) != n:
        raise SchemaError(
            f"{path}, line {lineno}: expected {n} fields separated by '::', found {len(parts)} "
            f"({line[:80]!r}). MovieLens 1M's layout is ratings.dat UserID::MovieID::Rating::"
            "Timestamp and movies.dat MovieID::Title::Genres; fix or remove the line."
        )
    return parts


def _read_dat(path: Path, n: int, encoding: str) -> list[list[str]]:
    rows = []
    with open(path, encoding=encoding, newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                rows.append(_split_dat(line, n, path, lineno))
    return rows


def convert_ml1m(src: str | Path, dst: str | Path, encoding: str = "latin-1") -> dict:
    """Convert MovieLens 1M (``ratings.dat``, ``movies.dat``, ``::``-separated, latin-1) into
    the ml-latest-small CSV layout in ``dst`` (UTF-8, comma-separated, header rows).

    ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp`` becomes ``ratings.csv`` (ratings
    written as ``4.0``, like ml-latest-small); ``movies.dat`` ``MovieID::Title::Genres``
    becomes ``movies.csv``. ``users.dat`` (demographics) has no place in the layout and is
    ignored. A ``tags.dat`` (MovieLens 10M) becomes ``tags.csv``; there is no ``links.csv``.
    Load the result with ``LLMREC_DATA_VERIFY=0``. Returns counts (also in ``DERIVED.json``).

    Args:
        src: the unzipped MovieLens 1M folder.
        dst: the folder to write.
        encoding: the ``.dat`` files' encoding.

    Returns:
        The note saved as DERIVED.json: the counts written (users, movies, ratings, tag_rows).
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    missing = [n for n in ("ratings.dat", "movies.dat") if not (src / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{src} lacks {', '.join(missing)}: point convert-ml1m at the unzipped MovieLens 1M "
            "folder (ml-1m/, holding ratings.dat, movies.dat and users.dat)."
        )
    if dst.resolve() == src.resolve():
        raise ValueError("convert-ml1m needs a destination folder other than its source")
    ratings = pd.DataFrame(_read_dat(src / "ratings.dat", 4, encoding),
                           columns=list(_COLUMNS["ratings.csv"]))
    for col in ("userId", "movieId", "timestamp"):
        ratings[col] = _numeric(ratings, col, src / "ratings.dat").astype(str)
    ratings["rating"] = _numeric(ratings, "rating", src / "ratings.dat", kind="float").map(
        lambda v: f"{float(v):.1f}")
    movies = pd.DataFrame(_read_dat(src / "movies.dat", 3, encoding),
                          columns=list(_COLUMNS["movies.csv"]))
    movies["movieId"] = _numeric(movies, "movieId", src / "movies.dat").astype(str)
    movies["genres"] = movies["genres"].replace("", "(no genres listed)")
    tags = None
    if (src / "tags.dat").is_file():
        tags = pd.DataFrame(_read_dat(src / "tags.dat", 4, encoding),
                            columns=list(_COLUMNS["tags.csv"]))

    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (dst / name).unlink(missing_ok=True)
    _write_csv(ratings, dst / "ratings.csv")
    _write_csv(movies, dst / "movies.csv")
    if tags is not None:
        _write_csv(tags, dst / "tags.csv")
    note = {"converted_from": "MovieLens 1M .dat layout", "encoding": encoding,
            "ratings": int(len(ratings)), "movies": int(len(movies)),
            "users": int(ratings["userId"].nunique()),
            "tag_rows": int(len(tags)) if tags is not None else 0,
            "license": "converted from MovieLens: the GroupLens license of the source applies"}
    import json

    (dst / DERIVED_NOTE).write_text(json.dumps(note, indent=2) + "\n")
    return note


def _parser():
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m llmrec_lib.data",
        description="Get, check, derive or convert MovieLens data for the book.")
    sub = p.add_subparsers(dest="cmd")
    d = sub.add_parser("download", help="download the official zip and verify it (needs internet)")
    d.add_argument("dest", nargs="?", default=None)
    v = sub.add_parser("verify", help="load a folder and print its summary (default command)")
    v.add_argument("folder", nargs="?", default=None)
    dv = sub.add_parser(
        "derive", help="write a data set derived from the reference: other users, a later "
        "time window, no tags (CI's second run)")
    dv.add_argument("--out", required=True, help="folder to write (created)")
    dv.add_argument("--seed", type=int, default=0)
    dv.add_argument("--source", default=None, help="reference folder (default: LLMREC_DATA_DIR)")
    dv.add_argument("--users", type=float, default=0.8, help="share of users kept (default 0.8)")
    dv.add_argument("--drop-earliest", type=float, default=0.1,
                    help="share of the kept users' ratings dropped from the start of the "
                    "timeline (default 0.1)")
    dv.add_argument("--with-tags", action="store_true", help="keep tags.csv (default: none)")
    dv.add_argument("--keep-all-movies", action="store_true",
                    help="keep every movie, even those no longer rated")
    dv.add_argument("--min-movie-ratings", type=int, default=1,
                    help="drop movies rated fewer times than this in the window (default 1)")
    c = sub.add_parser("convert-ml1m", help="convert MovieLens 1M's .dat files to this layout")
    c.add_argument("src", help="the unzipped ml-1m folder")
    c.add_argument("dst", help="folder to write (created)")
    c.add_argument("--encoding", default="latin-1")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m llmrec_lib.data download [DEST]``, ``verify [DIR]`` (the default),
    ``derive --out DIR [--seed N]`` or ``convert-ml1m SRC DST``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 1 after printing a data error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv or ["verify"])
    try:
        if args.cmd == "download":
            folder = config.data_dir(args.dest)
            if folder.is_dir():
                verify_files(folder)
                print(f"{folder}: present and verified")
            else:
                print(f"downloaded and verified: {download(args.dest)}")
        elif args.cmd == "verify":
            ml = load_movielens(args.folder)
            state = ("verified: the 2018 release" if config.reference_data(ml.path) else
                     f"loaded, not the reference release ({config.DATA_VERIFY_ENV}=0)")
            print(f"{ml.path}: {state}; {ml.summary()}")
        elif args.cmd == "derive":
            note = derive(args.out, seed=args.seed, source=args.source, user_frac=args.users,
                          drop_earliest=args.drop_earliest, tags=args.with_tags,
                          prune_movies=not args.keep_all_movies,
                          min_movie_ratings=args.min_movie_ratings)
            print(f"{args.out}: {note['users']} users, {note['movies']} movies, "
                  f"{note['ratings']} ratings, {note['tag_rows']} tags. Run the book on it with "
                  f"LLMREC_DATA_DIR={args.out} {config.DATA_VERIFY_ENV}=0")
        elif args.cmd == "convert-ml1m":
            note = convert_ml1m(args.src, args.dst, encoding=args.encoding)
            ml = load_movielens(args.dst, verify=False)
            print(f"{args.dst}: {note['users']} users, {note['movies']} movies, "
                  f"{note['ratings']} ratings; loads ({len(ml.item_ids)} items). Run the book "
                  f"on it with LLMREC_DATA_DIR={args.dst} {config.DATA_VERIFY_ENV}=0")
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
