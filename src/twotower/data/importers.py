"""Importers: MovieLens (ml-latest-small CSV, ML-1M `.dat`, ML-100K `u.*`) and generic tables
(CSV or Parquet). Every import is validated in memory first, then staged with COPY and merged in
one transaction: a bad file names file, row and problem, and leaves the database unchanged.
Importing the same files twice changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg

from twotower.data.load import copy_frame
from twotower.db import sql
from twotower.errors import InvalidInput

LIKE_THRESHOLD = 4.0  # MovieLens: rating >= 4 is a like, lower is a nope

TABLE_COLUMNS = {
    "videos": (["id"], ["title", "description", "genre", "maker", "price", "duration_seconds",
                        "product_released_at", "distribution_started_at", "published_at", "created_at"]),
    "decisions": (["user_id", "video_id", "decision_type", "created_at"], []),
    "tags": (["video_id", "tag_name"], ["created_at"]),  # created_at: when it was attached (optional)
    "performers": (["video_id", "performer_name"], ["created_at"]),
    "profiles": (["user_id"], ["display_name", "created_at", "age_range", "region"]),
}
_TIME_FORMATS = [f"%Y-%m-%d{sep}%H:%M:%S{frac}{tz}" for tz in ("%:z", "") for sep in ("T", " ")
                 for frac in ("%.f", "")]
TIME_COLUMNS = {"created_at", "product_released_at", "distribution_started_at", "published_at"}


@dataclass
class ImportFrames:
    """Frames in the staging layout, each with a `_row` column (1-based source row) and the
    file it came from, for error messages."""

    videos: pl.DataFrame
    decisions: pl.DataFrame
    tags: pl.DataFrame | None = None
    performers: pl.DataFrame | None = None
    profiles: pl.DataFrame | None = None
    files: dict[str, str] | None = None


# --------------------------------------------------------------------------- reading

def _need(path: Path) -> Path:
    if not path.exists():
        raise InvalidInput(f"file not found: {path}")
    if not path.is_file():
        raise InvalidInput(f"not a file: {path}")
    return path


def _read_table(path: Path) -> pl.DataFrame:
    _need(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pl.read_parquet(path)
        else:
            df = pl.read_csv(path, infer_schema_length=0)  # all text; we parse ourselves
    except Exception as e:
        raise InvalidInput(f"{path}: cannot read it as {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: {e}") from e
    return df.with_row_index("_row", offset=2 if path.suffix.lower() not in (".parquet", ".pq") else 1)


def _check_columns(df: pl.DataFrame, kind: str, path: Path) -> pl.DataFrame:
    required, optional = TABLE_COLUMNS[kind]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InvalidInput(f"{path}: missing column(s) {', '.join(missing)} "
                           f"(a {kind} file needs {', '.join(required)})")
    keep = ["_row"] + [c for c in required + optional if c in df.columns]
    return df.select(keep)


def _parse_time(df: pl.DataFrame, col: str, path: Path) -> pl.DataFrame:
    """Parse ISO-8601 strings or unix seconds into UTC timestamps; report the first bad row."""
    if col not in df.columns:
        return df
    s = df[col]
    if s.dtype == pl.Datetime or isinstance(s.dtype, pl.Datetime):
        parsed = s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None else s.dt.convert_time_zone("UTC")
    else:
        txt = s.cast(pl.Utf8).str.strip_chars()
        as_num = txt.cast(pl.Float64, strict=False)
        iso = txt.str.replace(r"Z$", "+00:00").str.replace(
            r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?[+-]\d\d)$", "${1}:00")
        as_iso = pl.select(pl.coalesce([
            iso.str.to_datetime(f, time_zone="UTC", strict=False, time_unit="us")
            for f in _TIME_FORMATS] + [iso.str.to_date("%Y-%m-%d", strict=False)
                                       .cast(pl.Datetime("us")).dt.replace_time_zone("UTC")])).to_series()
        from_num = (as_num * 1e6).cast(pl.Int64, strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        parsed = pl.select(pl.when(as_num.is_not_null()).then(from_num).otherwise(as_iso)).to_series()
        bad = txt.is_not_null() & (txt != "") & parsed.is_null()
        if bad.any():
            i = int(bad.arg_max())
            raise InvalidInput(f"{path}, row {df['_row'][i]}: bad timestamp {txt[i]!r} in column "
                               f"{col} (use ISO-8601 like 2024-05-01T12:00:00Z or unix seconds)")
    return df.with_columns(parsed.alias(col))


def _parse_number(df: pl.DataFrame, col: str, dtype: pl.DataType, path: Path) -> pl.DataFrame:
    if col not in df.columns:
        return df
    txt = df[col].cast(pl.Utf8)
    val = txt.cast(pl.Float64, strict=False)
    bad = txt.is_not_null() & (txt.str.strip_chars() != "") & (val.is_null() | (val < 0))
    if bad.any():
        i = int(bad.arg_max())
        raise InvalidInput(f"{path}, row {df['_row'][i]}: {col} must be a number >= 0, got {txt[i]!r}")
    return df.with_columns(val.cast(dtype).alias(col))


def _check_ids(df: pl.DataFrame, cols: list[str], path: Path) -> None:
    for c in cols:
        s = df[c].cast(pl.Utf8)
        bad = s.is_null() | (s.str.strip_chars() == "") | (s.str.len_chars() > 256) | s.str.contains("\x00", literal=True)
        if bad.any():
            i = int(bad.arg_max())
            raise InvalidInput(f"{path}, row {df['_row'][i]}: {c} is empty, too long (>256) or has a NUL byte")


def _check_decisions(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    df = df.with_columns(pl.col("decision_type").cast(pl.Utf8).str.strip_chars().str.to_lowercase())
    bad = ~df["decision_type"].is_in(["like", "nope"]) | df["decision_type"].is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise InvalidInput(f"{path}, row {df['_row'][i]}: unknown decision_type "
                           f"{df['decision_type'][i]!r} (use 'like' or 'nope')")
    missing_t = df["created_at"].is_null()
    if missing_t.any():
        i = int(missing_t.arg_max())
        raise InvalidInput(f"{path}, row {df['_row'][i]}: created_at is empty")
    return df


def read_tables(videos: Path, decisions: Path, tags: Path | None = None,
                performers: Path | None = None, profiles: Path | None = None) -> ImportFrames:
    """Read and validate the generic table layout (see README, "Importing your data")."""
    files: dict[str, str] = {}
    out: dict[str, pl.DataFrame | None] = {}
    for kind, path in (("videos", videos), ("decisions", decisions), ("tags", tags),
                       ("performers", performers), ("profiles", profiles)):
        if path is None:
            out[kind] = None
            continue
        path = Path(path)
        files[kind] = str(path)
        df = _check_columns(_read_table(path), kind, path)
        df = df.with_columns(pl.col(c).cast(pl.Utf8) for c in df.columns
                             if c != "_row" and c not in TIME_COLUMNS | {"price", "duration_seconds"})
        for c in TIME_COLUMNS & set(df.columns):
            df = _parse_time(df, c, path)
        df = _parse_number(df, "price", pl.Float64, path)
        df = _parse_number(df, "duration_seconds", pl.Int32, path)
        id_cols = {"videos": ["id"], "decisions": ["user_id", "video_id"], "tags": ["video_id", "tag_name"],
                   "performers": ["video_id", "performer_name"], "profiles": ["user_id"]}[kind]
        _check_ids(df, id_cols, path)
        if kind == "decisions":
            df = _check_decisions(df, path)
        out[kind] = df
    return ImportFrames(out["videos"], out["decisions"], out["tags"], out["performers"],
                        out["profiles"], files)


# --------------------------------------------------------------------------- MovieLens

_YEAR = r"\((\d{4})\)\s*$"


def _ml_videos(movies: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """movies(movieId, title, genres 'A|B') -> videos + genre tags."""
    year = movies["title"].str.extract(_YEAR, 1).cast(pl.Int32, strict=False)
    videos = movies.select(
        "_row",
        pl.col("movieId").cast(pl.Utf8).alias("id"),
        pl.col("title").str.strip_chars(),
        pl.col("genres").str.split("|").list.first().alias("genre"),
    ).with_columns(
        pl.when(year.is_not_null()).then(pl.datetime(year, 1, 1, time_zone="UTC"))
        .otherwise(None).alias("product_released_at")
    ).with_columns(pl.col("genre").replace("(no genres listed)", None))
    tags = movies.select("_row", pl.col("movieId").cast(pl.Utf8).alias("video_id"),
                         pl.col("genres").str.split("|").alias("tag_name")).explode("tag_name")
    tags = tags.filter(pl.col("tag_name") != "(no genres listed)").with_columns(
        pl.col("tag_name").str.to_lowercase())
    return videos, tags


def _ml_decisions(ratings: pl.DataFrame) -> pl.DataFrame:
    return ratings.select(
        "_row",
        pl.col("userId").cast(pl.Utf8).alias("user_id"),
        pl.col("movieId").cast(pl.Utf8).alias("video_id"),
        pl.when(pl.col("rating").cast(pl.Float64) >= LIKE_THRESHOLD).then(pl.lit("like"))
        .otherwise(pl.lit("nope")).alias("decision_type"),
        (pl.col("timestamp").cast(pl.Int64) * 1_000_000).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC").alias("created_at"),
    )


def _read_dat(path: Path, names: list[str], sep: str) -> pl.DataFrame:
    """MovieLens `::`/`|`/tab files are latin-1 and have no header."""
    _need(path)
    text = path.read_bytes().decode("latin-1")
    rows = [line.split(sep) for line in text.splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) < len(names)), None)
    if bad is not None:
        raise InvalidInput(f"{path}, row {bad + 1}: expected {len(names)} fields separated by {sep!r}")
    return pl.DataFrame({n: [r[i] for r in rows] for i, n in enumerate(names)}).with_row_index(
        "_row", offset=1)


def read_movielens(path: Path) -> ImportFrames:
    """Detect the layout in `path` and read it into staging frames."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a folder: give the MovieLens folder (with ratings.csv, "
                           "ratings.dat or u.data)")
    try:
        if (path / "ratings.csv").exists():
            return _read_ml_latest(path)
        if (path / "ratings.dat").exists():
            return _read_ml_1m(path)
        if (path / "u.data").exists():
            return _read_ml_100k(path)
    except (pl.exceptions.PolarsError, ValueError) as e:
        raise InvalidInput(f"{path}: cannot parse MovieLens files: {e}") from e
    raise InvalidInput(f"{path}: no MovieLens layout found (expected ratings.csv, ratings.dat or u.data)")


def _require(df: pl.DataFrame, cols: list[str], path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InvalidInput(f"{path}: missing column(s) {', '.join(missing)}")


def _check_ml_ratings(r: pl.DataFrame, path: Path) -> None:
    rating = r["rating"].cast(pl.Float64, strict=False)
    ts = r["timestamp"].cast(pl.Int64, strict=False)
    bad = rating.is_null() | ts.is_null()
    if bad.any():
        i = int(bad.arg_max())
        raise InvalidInput(f"{path}, row {r['_row'][i]}: rating and timestamp must be numbers, "
                           f"got {r['rating'][i]!r}, {r['timestamp'][i]!r}")


def _read_ml_latest(path: Path) -> ImportFrames:
    rp, mp, tp = path / "ratings.csv", path / "movies.csv", path / "tags.csv"
    ratings = _read_table(rp)
    movies = _read_table(_need(mp))
    _require(ratings, ["userId", "movieId", "rating", "timestamp"], rp)
    _require(movies, ["movieId", "title", "genres"], mp)
    _check_ml_ratings(ratings, rp)
    videos, genre_tags = _ml_videos(movies)
    tags = genre_tags
    if tp.exists():
        ut = _read_table(tp)
        _require(ut, ["movieId", "tag"], tp)
        # a user tag exists from its timestamp on (features for a past cutoff must not see it)
        when = (pl.from_epoch(pl.col("timestamp").cast(pl.Int64, strict=False), time_unit="s")
                .dt.replace_time_zone("UTC")
                if "timestamp" in ut.columns else pl.lit(None, pl.Datetime("us", "UTC")))
        user_tags = ut.select("_row", pl.col("movieId").cast(pl.Utf8).alias("video_id"),
                              pl.col("tag").str.strip_chars().str.to_lowercase().alias("tag_name"),
                              when.cast(pl.Datetime("us", "UTC")).alias("created_at"))
        user_tags = user_tags.filter(pl.col("tag_name").is_not_null() & (pl.col("tag_name") != "")
                                     & (pl.col("tag_name").str.len_chars() <= 256))
        tags = pl.concat([genre_tags, user_tags], how="diagonal")
    files = {"videos": str(mp), "decisions": str(rp), "tags": str(tp)}
    return ImportFrames(videos, _ml_decisions(ratings), tags, None, None, files)


_AGE = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55",
        "56": "56+"}
_OCCUPATION_1M = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer",
                  "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
                  "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
                  "unemployed", "writer"]


def _profiles(users: pl.DataFrame, age: pl.Expr) -> pl.DataFrame:
    """ML user demographics: age -> age_range, zip -> region; gender and occupation have no
    column in the schema, so they are kept in display_name."""
    return users.select(
        "_row",
        pl.col("user_id"),
        pl.format("user {} ({}, {})", "user_id", "gender", "occupation").alias("display_name"),
        age.alias("age_range"),
        pl.col("zip").str.slice(0, 3).alias("region"),
    )


def _read_ml_1m(path: Path) -> ImportFrames:
    ratings = _read_dat(path / "ratings.dat", ["userId", "movieId", "rating", "timestamp"], "::")
    _check_ml_ratings(ratings, path / "ratings.dat")
    movies = _read_dat(path / "movies.dat", ["movieId", "title", "genres"], "::")
    videos, tags = _ml_videos(movies)
    decisions = _ml_decisions(ratings)
    profiles = None
    if (path / "users.dat").exists():
        users = _read_dat(path / "users.dat", ["user_id", "gender", "age", "occupation", "zip"], "::")
        occ = users["occupation"].cast(pl.Int32, strict=False)
        users = users.with_columns(pl.Series("occupation", [
            _OCCUPATION_1M[o] if o is not None and 0 <= o < len(_OCCUPATION_1M) else "unknown" for o in occ]))
        profiles = _profiles(users, pl.col("age").replace_strict(_AGE, default="unknown"))
        first = decisions.group_by("user_id").agg(pl.col("created_at").min())
        profiles = profiles.join(first, on="user_id", how="left")
    files = {"videos": str(path / "movies.dat"), "decisions": str(path / "ratings.dat"),
             "profiles": str(path / "users.dat")}
    return ImportFrames(videos, decisions, tags, None, profiles, files)


def _age_range(age: pl.Expr) -> pl.Expr:
    a = age.cast(pl.Int32, strict=False)
    return (pl.when(a < 18).then(pl.lit("under 18")).when(a < 25).then(pl.lit("18-24"))
            .when(a < 35).then(pl.lit("25-34")).when(a < 45).then(pl.lit("35-44"))
            .when(a < 55).then(pl.lit("45-54")).when(a.is_not_null()).then(pl.lit("55+"))
            .otherwise(pl.lit("unknown")))


def _read_ml_100k(path: Path) -> ImportFrames:
    ratings = _read_dat(path / "u.data", ["userId", "movieId", "rating", "timestamp"], "\t")
    _check_ml_ratings(ratings, path / "u.data")
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    if (path / "u.genre").exists():
        g = _read_dat(path / "u.genre", ["name", "idx"], "|")
        genres = g.sort(pl.col("idx").cast(pl.Int32))["name"].to_list()
    items = _read_dat(path / "u.item", ["movieId", "title", "release", "video_release", "url"]
                      + [f"g{i}" for i in range(len(genres))], "|")
    flags = pl.concat_list([pl.when(pl.col(f"g{i}") == "1").then(pl.lit(name)).otherwise(None)
                            for i, name in enumerate(genres)]).list.drop_nulls()
    movies = items.select("_row", "movieId", "title",
                          flags.list.join("|").alias("genres"))
    movies = movies.with_columns(pl.when(pl.col("genres") == "").then(pl.lit("(no genres listed)"))
                                 .otherwise(pl.col("genres")).alias("genres"))
    videos, tags = _ml_videos(movies)
    # u.item carries a full release date (01-Jan-1995); prefer it to the title's year.
    rel = items["release"].str.to_datetime("%d-%b-%Y", strict=False, time_zone="UTC", time_unit="us")
    videos = videos.with_columns(pl.coalesce(rel, pl.col("product_released_at")).alias("product_released_at"))
    decisions = _ml_decisions(ratings)
    profiles = None
    if (path / "u.user").exists():
        users = _read_dat(path / "u.user", ["user_id", "age", "gender", "occupation", "zip"], "|")
        profiles = _profiles(users, _age_range(pl.col("age")))
        first = decisions.group_by("user_id").agg(pl.col("created_at").min())
        profiles = profiles.join(first, on="user_id", how="left")
    files = {"videos": str(path / "u.item"), "decisions": str(path / "u.data"),
             "profiles": str(path / "u.user")}
    return ImportFrames(videos, decisions, tags, None, profiles, files)


# --------------------------------------------------------------------------- writing

_STAGE_COLS = {
    "stage_profiles": ["_row", "user_id", "display_name", "created_at", "age_range", "region"],
    "stage_videos": ["_row", "id", "title", "description", "genre", "maker", "price", "duration_seconds",
                     "product_released_at", "distribution_started_at", "published_at", "created_at"],
    "stage_tags": ["_row", "video_id", "tag_name", "created_at"],
    "stage_performers": ["_row", "video_id", "performer_name", "created_at"],
    "stage_decisions": ["_row", "user_id", "video_id", "decision_type", "created_at"],
}


def ingest(conn: psycopg.Connection, frames: ImportFrames) -> dict[str, int]:
    """Stage and merge into the demo tables in one transaction. Returns the row counts after the
    import."""
    from twotower.db import require_demo_tables

    require_demo_tables(conn)
    files = frames.files or {}
    with conn.transaction():
        conn.execute(sql("import_stage"))
        for table, df in (("stage_profiles", frames.profiles), ("stage_videos", frames.videos),
                          ("stage_tags", frames.tags), ("stage_performers", frames.performers),
                          ("stage_decisions", frames.decisions)):
            if df is not None:
                copy_frame(conn, table, df.select([c for c in _STAGE_COLS[table] if c in df.columns]))
        bad = conn.execute(sql("import_unknown_video")).fetchone()
        if bad:
            src, row, vid = bad
            raise InvalidInput(f"{files.get(src, src)}, row {row}: video {vid!r} is not in the "
                               "videos file nor in the database")
        conn.execute(sql("import_merge"))
        counts = {t: conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(t))).fetchone()[0]
            for t in ("profiles", "videos", "video_tags", "video_performers", "user_video_decisions")}
    for t in counts:
        conn.execute(psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(t)))
    conn.commit()
    return counts


