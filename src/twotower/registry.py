"""Model registry: rows in embedding_model_versions. Exactly one default version; optional A/B
traffic shares over active versions summing to 1; every change in one transaction, logged in
model_activations so a rollback knows where to go back."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from twotower.errors import InvalidInput, NotFound
from twotower.export import listed_files, read_meta, verify_manifest


@dataclass
class ModelVersion:
    version: str
    model_type: str
    model_path: str
    embedding_dim: int
    metric: str
    is_active: bool
    is_default: bool
    traffic_share: float
    metrics: dict
    created_at: object
    videos_embedded: int = 0


def register(conn: psycopg.Connection, folder: Path, artifacts_root: Path) -> ModelVersion:
    """Verify an artifact folder, copy it under artifacts_root/<version> if it lives elsewhere,
    and add its row (inactive). Registering the same version twice is refused."""
    folder = Path(folder).resolve()
    manifest = verify_manifest(folder)
    meta = read_meta(folder)
    version = meta["version"]
    target = (artifacts_root / version).resolve()
    with conn.transaction():
        if conn.execute("SELECT 1 FROM embedding_model_versions WHERE version = %s", (version,)).fetchone():
            raise InvalidInput(f"version {version} is already registered")
        if folder != target:
            if target.exists():
                raise InvalidInput(f"{target} exists and is not {folder}: remove it or re-export")
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in listed_files(manifest):  # only what the manifest vouches for
                shutil.copy2(folder / name, tmp / name)
            verify_manifest(tmp)
            tmp.rename(target)
        conn.execute(
            "INSERT INTO embedding_model_versions (version, model_type, model_path, embedding_dim, metric, metrics,"
            " user_vector, max_history) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (version, meta["model_type"], str(target), meta["embedding_dim"],
             "cosine" if meta["normalized"] else "ip", Jsonb(meta.get("metrics") or {}),
             meta.get("user_vector", "onnx"), int(meta.get("max_history", 200))))
        imp = meta.get("feature_importance") or {}
        if imp:  # the training run's permutation importance, for `models show` and the dashboard
            conn.cursor().executemany(
                "INSERT INTO feature_importance (model_version_id, feature_name, importance_score) "
                "SELECT id, %s, %s FROM embedding_model_versions WHERE version = %s",
                [(k, float(v), version) for k, v in imp.items()])
    return get(conn, version)


def list_versions(conn: psycopg.Connection) -> list[ModelVersion]:
    rows = conn.execute(
        "SELECT m.version, m.model_type, m.model_path, m.embedding_dim, m.metric, m.is_active, m.is_default,"
        " m.traffic_share, m.metrics, m.created_at,"
        " (SELECT count(*) FROM video_embeddings e WHERE e.model_version = m.version)"
        " FROM embedding_model_versions m ORDER BY m.created_at, m.id").fetchall()
    conn.commit()
    return [ModelVersion(*r) for r in rows]


def get(conn: psycopg.Connection, version: str) -> ModelVersion:
    for v in list_versions(conn):
        if v.version == version:
            return v
    raise NotFound(f"model version {version!r} is not registered: see `twotower models list`")


def importance(conn: psycopg.Connection, version: str) -> list[tuple[str, float]]:
    """The version's stored feature importance, largest first ([] when none is stored)."""
    rows = conn.execute("SELECT f.feature_name, f.importance_score FROM feature_importance f JOIN "
                        "embedding_model_versions m ON m.id = f.model_version_id WHERE m.version = %s "
                        "ORDER BY 2 DESC, 1", (version,)).fetchall()
    conn.commit()
    return [(n, float(s)) for n, s in rows]


def active_versions(conn: psycopg.Connection) -> list[ModelVersion]:
    return [v for v in list_versions(conn) if v.is_active and v.traffic_share > 0]


def _require_embeddings(conn: psycopg.Connection, version: str) -> None:
    n = conn.execute("SELECT count(*) FROM video_embeddings WHERE model_version = %s", (version,)).fetchone()[0]
    if n == 0:
        raise InvalidInput(f"version {version} has no video embeddings yet: run "
                           f"`twotower embed --version {version}` before activating it")


def _current_default(conn: psycopg.Connection) -> str | None:
    r = conn.execute("SELECT version FROM embedding_model_versions WHERE is_default").fetchone()
    return r[0] if r else None


def activate(conn: psycopg.Connection, version: str, action: str = "activate") -> ModelVersion:
    """Make `version` the default and only active version (traffic 1.0), atomically."""
    get(conn, version)
    with conn.transaction():
        conn.execute("LOCK TABLE embedding_model_versions IN EXCLUSIVE MODE")
        _require_embeddings(conn, version)
        prev = _current_default(conn)
        conn.execute("UPDATE embedding_model_versions SET is_default = false, is_active = false, traffic_share = 0"
                     " WHERE version <> %s", (version,))
        conn.execute("UPDATE embedding_model_versions SET is_default = true, is_active = true, traffic_share = 1,"
                     " activated_at = now() WHERE version = %s", (version,))
        conn.execute("INSERT INTO model_activations (version, previous, action) VALUES (%s, %s, %s)",
                     (version, prev, action))
    return get(conn, version)


def rollback(conn: psycopg.Connection) -> ModelVersion:
    """Re-activate the default that was in place before the last activation."""
    with conn.transaction():
        cur = _current_default(conn)
        row = conn.execute("SELECT previous FROM model_activations WHERE version = %s AND action <> 'traffic'"
                           " ORDER BY id DESC LIMIT 1", (cur,)).fetchone() if cur else None
    if not row or not row[0]:
        raise InvalidInput("nothing to roll back to: no earlier default version was recorded")
    return activate(conn, row[0], action="rollback")


def set_traffic(conn: psycopg.Connection, shares: dict[str, float]) -> list[ModelVersion]:
    """A/B split: the listed versions get these shares (summing to 1), the others none. The
    default stays the current one if it is listed, else the version with the largest share."""
    if not shares:
        raise InvalidInput("give at least one VERSION=SHARE")
    bad = {v: s for v, s in shares.items() if not 0 <= s <= 1}
    if bad:
        raise InvalidInput(f"shares must be between 0 and 1: {bad}")
    if abs(sum(shares.values()) - 1.0) > 1e-6:
        raise InvalidInput(f"traffic shares must sum to 1, not {sum(shares.values()):.4f}")
    for v in shares:
        get(conn, v)
    with conn.transaction():
        conn.execute("LOCK TABLE embedding_model_versions IN EXCLUSIVE MODE")
        for v, s in shares.items():
            if s > 0:
                _require_embeddings(conn, v)
        prev = _current_default(conn)
        default = prev if shares.get(prev or "", 0) > 0 else max(shares, key=shares.get)
        conn.execute("UPDATE embedding_model_versions SET is_default = false, is_active = false, traffic_share = 0")
        for v, s in shares.items():
            conn.execute("UPDATE embedding_model_versions SET is_active = %s, traffic_share = %s,"
                         " is_default = %s, activated_at = coalesce(activated_at, now()) WHERE version = %s",
                         (s > 0, s, v == default, v))
        conn.execute("INSERT INTO model_activations (version, previous, action, traffic) VALUES (%s, %s, 'traffic', %s)",
                     (default, prev, Jsonb(shares)))
    return active_versions(conn)


def parse_shares(items: list[str]) -> dict[str, float]:
    out = {}
    for it in items:
        if "=" not in it:
            raise InvalidInput(f"{it!r}: write VERSION=SHARE, e.g. v2=0.1")
        v, s = it.split("=", 1)
        try:
            out[v.strip()] = float(s)
        except ValueError as e:
            raise InvalidInput(f"{it!r}: the share must be a number") from e
    return out
