"""Bulk reads and writes with COPY: the database <-> polars frames, no per-row Python."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import psycopg
from psycopg import sql

COPY_CHUNK_ROWS = 500_000

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "profiles": {"user_id": pl.Utf8, "display_name": pl.Utf8, "created_at": pl.Datetime("us", "UTC"),
                 "age_range": pl.Utf8, "region": pl.Utf8},
    "videos": {"id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8, "genre": pl.Utf8, "maker": pl.Utf8,
               "price": pl.Float64, "duration_seconds": pl.Int64,
               "product_released_at": pl.Datetime("us", "UTC"),
               "created_at": pl.Datetime("us", "UTC"), "updated_at": pl.Datetime("us", "UTC")},
    "video_tags": {"video_id": pl.Utf8, "tag_name": pl.Utf8, "created_at": pl.Datetime("us", "UTC")},
    "video_performers": {"video_id": pl.Utf8, "performer_name": pl.Utf8, "created_at": pl.Datetime("us", "UTC")},
    # seq: import order (the demo tables' identity column, or an increasing column the mapping
    # names); it breaks ties in time, so a split does not depend on how ids are spelled
    "user_video_decisions": {"user_id": pl.Utf8, "video_id": pl.Utf8, "decision_type": pl.Utf8,
                             "created_at": pl.Datetime("us", "UTC"), "seq": pl.Int64},
}


# Where each frame is read from: twotower's views over the app's tables (source.py).
VIEWS = {"profiles": "src_profiles", "videos": "src_videos", "video_tags": "src_video_tags",
         "video_performers": "src_video_performers", "user_video_decisions": "src_decisions"}


@dataclass
class Frames:
    """Everything the learning stages read, as polars frames."""

    profiles: pl.DataFrame
    videos: pl.DataFrame
    tags: pl.DataFrame
    performers: pl.DataFrame
    decisions: pl.DataFrame

    def as_of(self, t: datetime | None) -> Frames:
        """The catalogue as it was before `t`: tags and performers attached at or after it are
        dropped (those without a time, like genres, are kept). A model trained or evaluated for
        a cutoff must not see a tag users applied after it."""
        if t is None:
            return self

        def before(df: pl.DataFrame) -> pl.DataFrame:
            if "created_at" not in df.columns:
                return df
            return df.filter(pl.col("created_at").is_null() | (pl.col("created_at") < t))

        return Frames(self.profiles, self.videos, before(self.tags), before(self.performers), self.decisions)

    @property
    def window(self) -> tuple[str | None, str | None]:
        d = self.decisions["created_at"]
        if d.len() == 0:
            return None, None
        return str(d.min()), str(d.max())


def copy_frame(conn: psycopg.Connection, table: str, df: pl.DataFrame) -> int:
    """Write a frame into `table` (columns by name) with COPY ... FROM STDIN (csv), in chunks."""
    if df.height == 0:
        return 0
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, df.columns)))
    # Timestamps as ISO-8601 with offset, which Postgres parses unambiguously.
    df = df.with_columns(
        pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        for c, t in df.schema.items() if isinstance(t, pl.Datetime)
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for start in range(0, df.height, COPY_CHUNK_ROWS):
            buf = io.BytesIO()
            df.slice(start, COPY_CHUNK_ROWS).write_csv(buf, include_header=False, null_value="")
            copy.write(buf.getvalue())
    return df.height


def read_query(conn: psycopg.Connection, query: sql.Composable | str,
               schema: dict[str, pl.DataType], params: dict | None = None) -> pl.DataFrame:
    """Run `COPY (query) TO STDOUT` and parse the CSV with polars."""
    q = query if isinstance(query, sql.Composable) else sql.SQL(query)
    if params:
        q = sql.SQL(psycopg.ClientCursor(conn).mogrify(q, params))  # bound client-side, quoted
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER true)").format(q)
    buf = io.BytesIO()
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for chunk in copy:
            buf.write(chunk)
    buf.seek(0)
    strings = {c: (pl.Utf8 if isinstance(t, pl.Datetime) else t) for c, t in schema.items()}
    df = pl.read_csv(buf, schema_overrides=strings, infer_schema_length=0) if buf.getbuffer().nbytes \
        else pl.DataFrame(schema=strings)
    df = df.select(list(schema))
    return df.with_columns(
        pl.col(c).str.to_datetime(time_zone="UTC", time_unit="us")
        for c, t in schema.items() if isinstance(t, pl.Datetime)
    )


def load_frames(conn: psycopg.Connection, since: datetime | None = None,
                until: datetime | None = None) -> Frames:
    """Load the app's tables as frames. `since`/`until` bound the decisions by created_at
    (until exclusive), so a model never sees decisions outside its data window."""
    def cols(t: str) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, SCHEMAS[t]))

    def q(t: str, order: str) -> sql.Composable:
        return sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            cols(t), sql.Identifier(VIEWS[t]), sql.SQL(order))

    dq = sql.SQL("SELECT {} FROM src_decisions WHERE created_at >= %(since)s "
                 "AND created_at < %(until)s ORDER BY created_at, seq, user_id, video_id").format(
        cols("user_video_decisions"))
    params = {"since": since or datetime(1900, 1, 1, tzinfo=UTC),
              "until": until or datetime(9999, 1, 1, tzinfo=UTC)}
    frames = Frames(
        profiles=read_query(conn, q("profiles", "user_id"), SCHEMAS["profiles"]),
        videos=read_query(conn, q("videos", "id"), SCHEMAS["videos"]),
        tags=read_query(conn, q("video_tags", "video_id, tag_name"), SCHEMAS["video_tags"]),
        performers=read_query(conn, q("video_performers", "video_id, performer_name"),
                              SCHEMAS["video_performers"]),
        decisions=read_query(conn, dq, SCHEMAS["user_video_decisions"], params),
    )
    conn.commit()
    return frames
