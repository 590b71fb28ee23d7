"""Embeddings: the item tower over every video and the user tower over every user with
decisions, in batches, written to Parquet in the artifact folder and to pgvector with binary
COPY; one partial HNSW index per version (inner product; vectors of normalised models are unit
length, so it is their cosine too). Also the per-user path (SQL feature function -> ONNX) and the
filtered HNSW query, which serving and the batch job share."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql as psql

from twotower import db
from twotower.config import EmbeddingConfig
from twotower.data.load import SCHEMAS, VIEWS, read_query
from twotower.db import sql
from twotower.errors import InvalidInput
from twotower.export import Artifacts

EMBED_BATCH = 4096


def index_name(version: str) -> str:
    return "video_emb_hnsw_" + hashlib.sha1(version.encode()).hexdigest()[:12]


def _vec_sql(name: str, dim: int, **kw) -> psql.Composed:
    return psql.SQL(sql(name)).format(dim=psql.Literal(dim), **kw)


def build_index(conn: psycopg.Connection, version: str, dim: int, cfg: EmbeddingConfig) -> None:
    conn.execute(_vec_sql("hnsw_index", dim, index=psql.Identifier(index_name(version)),
                          m=psql.Literal(cfg.hnsw_m), ef=psql.Literal(cfg.hnsw_ef_construction),
                          version=psql.Literal(version)))
    conn.execute("SELECT twotower.ensure_search_function(%s, %s)", (version, dim))  # recommend_videos' planned-once search


def drop_index(conn: psycopg.Connection, version: str) -> None:
    conn.execute(psql.SQL("DROP INDEX IF EXISTS {}").format(psql.Identifier(index_name(version))))
    conn.execute("SELECT twotower.drop_search_function(%s)", (version,))


def _copy_vectors(conn: psycopg.Connection, table: str, id_col: str, version: str,
                  ids: np.ndarray, vecs: np.ndarray, fingerprints: list[str | None] | None = None) -> None:
    cols = psql.SQL(", ").join(map(psql.Identifier, ["model_version", id_col, "embedding"]
                                   + (["fingerprint"] if fingerprints is not None else [])))
    stmt = psql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(psql.Identifier(table), cols)
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        if fingerprints is None:
            copy.set_types(["text", "text", "vector"])
            for i, v in zip(ids.tolist(), vecs, strict=True):
                copy.write_row((version, i, v))
        else:
            copy.set_types(["text", "text", "vector", "text"])
            for i, v, f in zip(ids.tolist(), vecs, fingerprints, strict=True):
                copy.write_row((version, i, v, f))


def _write_parquet(path: Path, id_col: str, ids: np.ndarray, vecs: np.ndarray) -> None:
    arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.astype(np.float32).ravel()), vecs.shape[1])
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table({id_col: pa.array(ids.astype(str)), "embedding": arr}), tmp)
    os.replace(tmp, path)


def item_embeddings(art: Artifacts, ids: np.ndarray, videos: pl.DataFrame, tags: pl.DataFrame,
                    performers: pl.DataFrame) -> np.ndarray:
    x = art.pipeline.item_matrix(ids, videos, tags, performers)
    idx = art.item_index(ids)
    out = np.empty((len(ids), art.dim), dtype=np.float32)
    for s in range(0, len(ids), EMBED_BATCH):
        e = min(s + EMBED_BATCH, len(ids))
        out[s:e] = art.embed_items(x[s:e].toarray(), idx[s:e])
    return out


def load_catalog(conn: psycopg.Connection) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """videos, tags, performers (no decisions: embedding videos does not need them)."""
    q = lambda t, o: psql.SQL("SELECT {} FROM {} ORDER BY {}").format(  # noqa: E731
        psql.SQL(", ").join(map(psql.Identifier, SCHEMAS[t])), psql.Identifier(VIEWS[t]), psql.SQL(o))
    out = (read_query(conn, q("videos", "id"), SCHEMAS["videos"]),
           read_query(conn, q("video_tags", "video_id, tag_name"), SCHEMAS["video_tags"]),
           read_query(conn, q("video_performers", "video_id, performer_name"), SCHEMAS["video_performers"]))
    conn.commit()
    return out


@dataclass
class EmbedResult:
    rows: int
    seconds_embed: float
    seconds_load: float
    seconds_index: float
    parquet: Path


def embed_videos(conn: psycopg.Connection, art: Artifacts, cfg: EmbeddingConfig) -> EmbedResult:
    """Every video through the item tower; replaces this version's rows in one transaction and
    (re)builds its HNSW index."""
    import time

    t0 = time.perf_counter()
    # Fingerprints go in with the rows (an UPDATE afterwards would write the table twice), read
    # before the catalogue: a video edited meanwhile is re-embedded by the next batch-update.
    fp = dict(conn.execute("SELECT video_id, fingerprint FROM video_fingerprints()").fetchall())
    videos, tags, performers = load_catalog(conn)
    if videos.height == 0:
        raise InvalidInput("there are no videos to embed: import or generate data first")
    ids = videos["id"].to_numpy()
    vecs = item_embeddings(art, ids, videos, tags, performers)
    parquet = art.path / "video_embeddings.parquet"
    _write_parquet(parquet, "video_id", ids, vecs)
    t1 = time.perf_counter()
    with conn.transaction():
        drop_index(conn, art.version)
        conn.execute("DELETE FROM video_embeddings WHERE model_version = %s", (art.version,))
        conn.execute("DELETE FROM explore_vectors WHERE model_version = %s", (art.version,))  # stale copy
        _copy_vectors(conn, "video_embeddings", "video_id", art.version, ids, vecs, [fp.get(i) for i in ids.tolist()])
        write_history_rows(conn, art)
        t2 = time.perf_counter()
        build_index(conn, art.version, art.dim, cfg)
    conn.execute("ANALYZE video_embeddings")
    conn.commit()
    t3 = time.perf_counter()
    return EmbedResult(len(ids), t1 - t0, t2 - t1, t3 - t2, parquet)


def history_rows(art: Artifacts) -> tuple[np.ndarray, np.ndarray]:
    """(video ids, rows) of a version's history table, read through the exported user tower
    alone: a one-video history gives that video's row plus the content MLP of empty features,
    which an empty history gives alone (zero without the MLP) and is taken off."""
    ids = np.asarray(art.item_vocab, dtype=object)
    hist = np.arange(len(ids), dtype=np.int64)[:, None]  # (N, 1)
    feats = np.zeros((len(ids), art.pipeline.user_feature_dim), np.float32)
    base = art.embed_users(feats[:1], np.full((1, 1), -1, np.int64))
    rows = art.embed_users(feats, hist)
    return ids, rows - base


def write_history_rows(conn: psycopg.Connection, art: Artifacts) -> int:
    """The rows `sql_user_vector` sums (model_meta.json "user_vector": "sql" or "sql+onnx");
    0 otherwise."""
    conn.execute("DELETE FROM history_embeddings WHERE model_version = %s", (art.version,))
    if art.meta.get("user_vector") not in ("sql", "sql+onnx") or not art.item_vocab:
        return 0
    ids, rows = history_rows(art)
    _copy_vectors(conn, "history_embeddings", "video_id", art.version, ids, rows)
    return len(ids)


def user_history(art: Artifacts, liked: list[list[str]]) -> np.ndarray:
    """(B, L) model ids of liked videos (most recent first), -1 padded."""
    L = max(1, max((len(x) for x in liked), default=1))
    h = np.full((len(liked), min(L, art.pipeline.max_history)), -1, dtype=np.int64)
    for r, vids in enumerate(liked):  # at most max_history per user
        idx = art.item_index(vids[: h.shape[1]])
        h[r, : len(idx)] = idx
    return h


def embed_all_users(conn: psycopg.Connection, art: Artifacts) -> EmbedResult:
    """Every user with a decision, as of now, through the user tower (bulk pipeline)."""
    import time

    from twotower.data import load_frames

    t0 = time.perf_counter()
    f = load_frames(conn)
    ids = f.decisions["user_id"].unique().sort().to_numpy()
    now = datetime.now(UTC)
    x = art.pipeline.user_matrix(ids, f.profiles, f.decisions, f.videos, f.tags, f.performers, as_of=now)
    likes = (f.decisions.filter(pl.col("decision_type") == "like")
             .sort(["created_at", "video_id"], descending=True)
             .group_by("user_id", maintain_order=True).agg(pl.col("video_id").head(art.pipeline.max_history)))
    liked = dict(zip(likes["user_id"].to_list(), likes["video_id"].to_list(), strict=True))
    vecs = np.empty((len(ids), art.dim), dtype=np.float32)
    for s in range(0, len(ids), EMBED_BATCH):
        e = min(s + EMBED_BATCH, len(ids))
        hist = user_history(art, [liked.get(u, []) for u in ids[s:e]])
        vecs[s:e] = art.embed_users(x[s:e].toarray(), hist)
    _write_parquet(art.path / "user_embeddings.parquet", "user_id", ids, vecs)
    t1 = time.perf_counter()
    with conn.transaction():
        conn.execute("DELETE FROM user_embeddings WHERE model_version = %s", (art.version,))
        _copy_vectors(conn, "user_embeddings", "user_id", art.version, ids, vecs)
    return EmbedResult(len(ids), t1 - t0, time.perf_counter() - t1, 0.0, art.path / "user_embeddings.parquet")


def user_vectors_from_json(art: Artifacts, js: list[dict | None]) -> np.ndarray:
    """get_user_embedding_features JSON -> the user tower's vectors; an unknown user (None)
    gets the vector of empty features."""
    feats = np.zeros((len(js), art.pipeline.user_feature_dim), dtype=np.float32)
    for r, j in enumerate(js):  # one small JSON per user; the ONNX call below is batched
        if j is not None:
            feats[r] = art.pipeline.user_vector_from_json(j)
    hist = user_history(art, [(j or {}).get("liked_video_ids") or [] for j in js])
    return art.embed_users(feats, hist)


def user_vectors_online(conn: psycopg.Connection, art: Artifacts, user_ids: list[str]
                        ) -> tuple[np.ndarray, list[dict | None]]:
    """User vectors from the SQL feature function (the serving path), with the JSON."""
    rows = conn.execute(sql("user_features"), {"max_history": art.pipeline.max_history,
                                               "user_ids": user_ids}).fetchall()
    js = [r[1] for r in rows]
    return user_vectors_from_json(art, js), js


def item_vectors_online(conn: psycopg.Connection, art: Artifacts, video_ids: list[str]) -> np.ndarray:
    rows = conn.execute("SELECT v, get_item_embedding_features(v) FROM unnest(%s::text[]) v",
                        (video_ids,)).fetchall()
    feats = np.stack([art.pipeline.item_vector_from_json(j) if j else
                      np.zeros(art.pipeline.item_feature_dim, np.float32) for _, j in rows])
    return art.embed_items(feats, art.item_index(video_ids))


def upsert_vectors(conn: psycopg.Connection, table: str, id_col: str, version: str,
                   ids: list[str], vecs: np.ndarray) -> None:
    """Idempotent upsert of a batch (staged with COPY, merged with ON CONFLICT)."""
    ts = "updated_at" if table == "video_embeddings" else "last_updated"
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_vectors "
                 "(model_version text, id text, embedding vector) ON COMMIT DELETE ROWS")
    _copy_vectors(conn, "stage_vectors", "id", version, np.asarray(ids), vecs)
    conn.execute(psql.SQL(
        "INSERT INTO {t} (model_version, {c}, embedding, {ts}) "
        "SELECT model_version, id, embedding, now() FROM stage_vectors "
        "ON CONFLICT (model_version, {c}) DO UPDATE SET embedding = excluded.embedding, {ts} = now()"
    ).format(t=psql.Identifier(table), c=psql.Identifier(id_col), ts=psql.Identifier(ts)))


def search(conn: psycopg.Connection, version: str, dim: int, q: np.ndarray, k: int, user_id: str = "",
           ef_search: int = 100, max_scan_tuples: int = 20000, iterative: bool | None = None) -> list[tuple[str, float]]:
    """Filtered HNSW top-k (decided videos of user_id skipped), inside its own transaction so the
    SET LOCALs never leak to the next user of a pooled connection. pgvector >= 0.8 keeps scanning
    while the filter removes rows (iterative scans); older pgvector over-fetches instead: ef_search
    and the LIMIT grow fourfold until k undecided rows come back or OVERFETCH_MAX is reached."""
    if iterative is None:
        iterative = db.require_hnsw(db.pgvector_version(conn))
    n = k if iterative else max(k, ef_search)
    while True:
        with conn.transaction():
            stmt, params = db.search_settings(max(ef_search, n) if not iterative else ef_search, max_scan_tuples,
                                              iterative)
            conn.execute(stmt, params)
            rows = conn.execute(_vec_sql("hnsw_search", dim),
                                {"q": q.astype(np.float32), "version": version, "user_id": user_id, "k": n}).fetchall()
        if iterative or len(rows) >= k or n >= db.OVERFETCH_MAX:
            return rows[:k]
        n = min(db.OVERFETCH_MAX, n * 4)
