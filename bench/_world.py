"""A served synthetic world for the embedding and serving benchmarks: data in a scratch embedded
server, a hybrid model (truncated-SVD start: EASE does not scale to 1M videos) exported,
registered, embedded and activated through the same code the CLI runs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from _common import scratch_home

from twotower import db, registry
from twotower.config import Settings, load_config
from twotower.data import load_frames, synth
from twotower.embed import embed_all_users, embed_videos
from twotower.evaluate import Catalog, make_split
from twotower.export import export, load_artifacts
from twotower.train import train

MODEL = ["model.kind=hybrid", "model.init=svd", "model.normalize=false", "model.embedding_dim=64",
         "training.epochs=0", "training.distill_epochs=1"]


def build_world(name: str, users: int, videos: int, decisions: int, keep: bool = False) -> tuple[Settings, dict]:
    home = scratch_home(name)
    marker = home / "world.done"
    s = Settings(TWOTOWER_HOME=home, DATABASE_URL=None)
    if keep and marker.exists():
        with db.connection(s) as conn:
            db.migrate(conn, demo_tables=True, roles=True)  # a world built by an older commit gets the current schema
        return s, {"reused": True}
    shutil.rmtree(home, ignore_errors=True)
    t = {}
    cfg = load_config(None, MODEL)
    with db.connection(s) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        t0 = time.perf_counter()
        synth.load(conn, synth.generate(synth.SynthSpec(users=users, videos=videos, decisions=decisions, seed=1)))
        t["synth_s"] = time.perf_counter() - t0
        frames = load_frames(conn)
    cat = Catalog.from_frames(frames)
    t0 = time.perf_counter()
    r = train(cfg, frames, cat, make_split(cat, "none"), s.path("checkpoints") / "bench", quiet=True)
    t["train_s"] = time.perf_counter() - t0
    folder = export(r.checkpoint, None, s.path("artifacts"), "bench", force=True)
    t["model_mb"] = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    with db.connection(s) as conn:
        registry.register(conn, folder, s.path("artifacts"))
        art = load_artifacts(Path(folder), threads=2)
        e = embed_videos(conn, art, cfg.embedding)
        t |= {"embed_videos_s": e.seconds_embed, "copy_videos_s": e.seconds_load, "hnsw_build_s": e.seconds_index,
              "videos": e.rows}
        u = embed_all_users(conn, art)
        t |= {"embed_users_s": u.seconds_embed, "copy_users_s": u.seconds_load, "users": u.rows}
        registry.activate(conn, "bench")
    marker.write_text("ok")
    return s, t
