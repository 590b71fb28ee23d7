"""`twotower evaluate`: load from the database, split, fit and score each model, write a report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from twotower import db
from twotower.config import Config, Settings
from twotower.data import load_frames
from twotower.evaluate import (
    Catalog,
    ModelResult,
    build_context,
    evaluate_recommender,
    make_split,
    resolve_model,
)
from twotower.evaluate.report import write_report


def run_evaluation(settings: Settings, cfg: Config, models: list[str], split_name: str,
                   test_fraction: float | None = None, run: str | None = None
                   ) -> tuple[Path, list[ModelResult], dict]:
    recs = [resolve_model(m) for m in models]  # fail fast on a bad name or path
    with db.connection(settings) as conn:
        db.ensure_schema(conn)
        frames = load_frames(conn)
    catalog = Catalog.from_frames(frames)
    split = make_split(catalog, split_name, test_fraction or cfg.evaluation.test_fraction,
                       cfg.training.train_val_split, cfg.training.seed)
    ctx = build_context(catalog, split, frames.tags, frames)
    ks = cfg.evaluation.ks
    results = [evaluate_recommender(r, ctx, ks) for r in recs]
    meta = {"split": split_name, "split_info": split.describe(), "data_window": frames.window,
            "ks": ks, "models": models, "config": cfg.to_dict(),
            "database": "embedded" if not settings.database_url else "DATABASE_URL"}
    run = run or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{split_name}"
    out = write_report(settings.path("reports") / run, results, meta)
    return out, results, meta
