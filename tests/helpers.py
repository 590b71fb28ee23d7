"""Shared test helpers: a small synthetic world in the test database and a model trained on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twotower.config import Settings, load_config
from twotower.data import load_frames, synth
from twotower.evaluate import Catalog, make_split
from twotower.export import export
from twotower.train import train

SMALL_SPEC = synth.SynthSpec(users=150, videos=400, decisions=6000, seed=11)
SMALL_MODEL = ["model.embedding_dim=16", "model.hidden_dims=[32]", "training.distill_epochs=3"]


def load_world(conn, spec: synth.SynthSpec = SMALL_SPEC):
    synth.load(conn, synth.generate(spec))
    return load_frames(conn)


def trained_checkpoint(conn, tmp: Path, kind: str = "hybrid", split: str = "none", extra: list[str] | None = None) -> Path:
    f = load_frames(conn)
    cat = Catalog.from_frames(f)
    ov = SMALL_MODEL + (["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false",
                         "training.epochs=0"] if kind == "hybrid" else ["training.epochs=1"]) + (extra or [])
    r = train(load_config(None, ov), f, cat, make_split(cat, split), tmp / f"ckpt-{kind}", quiet=True)
    return r.checkpoint


def exported(conn, settings: Settings, tmp: Path, version: str = "v1", kind: str = "hybrid",
             extra: list[str] | None = None) -> Path:
    return export(trained_checkpoint(conn, tmp, kind, extra=extra), None, settings.path("artifacts"), version)


S3_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """A real uvicorn server for `app` on a free loopback port, in a thread; yields its base URL
    and stops it afterwards."""
    import threading
    import time

    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{srv.config.port}"
    finally:
        srv.should_exit = True
        t.join(10)
