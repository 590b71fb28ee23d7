"""`twotower retrain`: the weekly job. Train a candidate, compare it with the active default on
the same validation slice (each user's latest decisions, which neither model trained on), and
only if it is not worse: refit on everything, export, register, embed and activate it.
Otherwise keep the active model and say why."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twotower import db, registry
from twotower.config import Config, Settings
from twotower.data import load_frames
from twotower.embed import embed_all_users, embed_videos
from twotower.evaluate.splits import Catalog, make_split
from twotower.export import export, load_artifacts
from twotower.features import FeaturePipeline
from twotower.train import (
    Prepared,
    build,
    encode_items,
    encode_users,
    load_checkpoint,
    model_from_state,
    train,
    val_ndcg,
)


@dataclass
class RetrainResult:
    activated: bool
    candidate: str | None
    candidate_ndcg: float
    active: str | None
    active_ndcg: float | None
    reason: str


def _val_users(p: Prepared, max_users: int = 5000) -> np.ndarray:
    return np.flatnonzero(p.split.matrix("val").getnnz(axis=1) > 0)[:max_users]


def _artifact_ndcg(art, frames, catalog, split) -> float:
    p = build(art.pipeline, art.item_vocab, frames, catalog, split, "fit")
    item_vecs = np.concatenate([art.embed_items(p.item_x[np.arange(s, min(s + 4096, catalog.n_items))].numpy(),
                                                p.cat2model[s:s + 4096]) for s in range(0, catalog.n_items, 4096)])
    users = _val_users(p)
    return val_ndcg(p, users, art.embed_users(p.user_x[users].numpy(), p.history[users].numpy()), item_vecs)


def retrain(settings: Settings, cfg: Config, tolerance: float = 0.0, quiet: bool = False) -> RetrainResult:
    """Train a candidate, compare, and activate it if it is not worse; recorded in batch_runs
    (job 'retrain') from the start, so a failure at any stage is a failed run with its error."""
    with db.connection(settings) as conn:
        db.ensure_schema(conn)
        run_id = conn.execute("INSERT INTO batch_runs (job) VALUES ('retrain') RETURNING id").fetchone()[0]
        conn.commit()
    try:
        r = _retrain(settings, cfg, tolerance, quiet)
    except BaseException as e:
        with contextlib.suppress(Exception), db.connection(settings) as conn:
            conn.execute("UPDATE batch_runs SET status = 'failed', finished_at = now(), error = %s WHERE id = %s",
                         (str(e)[:2000] or type(e).__name__, run_id))
            conn.commit()
        raise
    with db.connection(settings) as conn:
        conn.execute("UPDATE batch_runs SET status = 'success', finished_at = now(), model_version = %s, "
                     "error = %s WHERE id = %s", (r.candidate if r.activated else r.active,
                                                  None if r.activated else r.reason, run_id))
        conn.commit()
    return r


def _retrain(settings: Settings, cfg: Config, tolerance: float, quiet: bool) -> RetrainResult:
    with db.connection(settings) as conn:
        db.ensure_schema(conn)
        frames = load_frames(conn)
        current = next((v for v in registry.list_versions(conn) if v.is_default), None)
    catalog = Catalog.from_frames(frames)
    split = make_split(catalog, "none", val_fraction=cfg.training.train_val_split, seed=cfg.training.seed)
    ckpts = settings.path("checkpoints")
    cand = train(cfg, frames, catalog, split, ckpts / f"retrain-{cfg.digest()}", quiet=quiet, final_refit=False)
    state = load_checkpoint(cand.checkpoint)
    model = model_from_state(state)
    p = build(FeaturePipeline.from_dict(state["pipeline"]), state["item_vocab"], frames, catalog, split, "fit")
    users = _val_users(p)
    cand_ndcg = val_ndcg(p, users, encode_users(model, p, users).numpy(), encode_items(model, p).numpy())
    act_ndcg = None
    if current is not None:
        act_ndcg = _artifact_ndcg(load_artifacts(Path(current.model_path)), frames, catalog, split)
        if cand_ndcg < act_ndcg - tolerance:
            return RetrainResult(False, None, cand_ndcg, current.version, act_ndcg,
                                 f"candidate NDCG@10 {cand_ndcg:.4f} is below the active {current.version}'s "
                                 f"{act_ndcg:.4f} on the same validation slice: keeping {current.version}")
    final = train(cfg, frames, catalog, split, ckpts / f"retrain-{cfg.digest()}-final", quiet=quiet) \
        if cfg.model.kind == "hybrid" and cfg.training.epochs == 0 else cand
    folder = export(final.checkpoint, None, settings.path("artifacts"))
    with db.connection(settings) as conn:
        v = registry.register(conn, folder, settings.path("artifacts"))
        art = load_artifacts(Path(v.model_path))
        started = conn.execute("SELECT now()").fetchone()[0]
        nv = embed_videos(conn, art, cfg.embedding).rows
        nu = embed_all_users(conn, art).rows
        with conn.transaction():
            conn.execute(db.sql("record_full_embed"), {"version": v.version, "started": started,
                                                       "videos": nv, "users": nu})
            conn.execute("UPDATE embedding_model_versions SET metrics = metrics || jsonb_build_object('val_ndcg@10', %s::float8)"
                         " WHERE version = %s", (cand_ndcg, v.version))
        registry.activate(conn, v.version)
    why = "no active model" if current is None else \
        f"candidate NDCG@10 {cand_ndcg:.4f} >= active {current.version}'s {act_ndcg:.4f}"
    return RetrainResult(True, v.version, cand_ndcg, current.version if current else None, act_ndcg,
                         f"activated {v.version} ({why})")
