import json
import os
import subprocess
import sys

import pytest

from twotower.config import load_config
from twotower.data import synth
from twotower.errors import InvalidInput, NotFound
from twotower.evaluate import resolve_model
from twotower.evaluate.run import run_evaluation


@pytest.fixture
def synth_db(conn):
    synth.load(conn, synth.generate(synth.SynthSpec(users=400, videos=800, decisions=24_000, seed=5)))
    return conn


def test_baselines_rank_as_expected_on_synthetic_data(settings, synth_db):
    cfg = load_config()
    out, results, meta = run_evaluation(settings, cfg, ["random", "popularity", "ease", "ials"],
                                        "temporal-user")
    nd = {r.name: r.metrics["ndcg@10"] for r in results}
    assert nd["popularity"] > 2 * nd["random"]
    assert nd["ease"] > nd["popularity"]
    assert nd["ials"] > nd["random"]
    for name in ("report.json", "report.md", "metrics_vs_k.png", "segments.png"):
        assert (out / name).exists()
    body = json.loads((out / "report.json").read_text())
    assert body["meta"]["split"] == "temporal-user" and body["meta"]["data_window"][0]
    assert body["meta"]["git_commit"] and body["meta"]["config"]["training"]["epochs"] == 25
    assert set(results[0].segments) >= {"light users", "medium users", "heavy users"}
    assert 0.4 < results[0].metrics["auc"] < 0.6  # random
    # each model against EASE, user by user, with a paired bootstrap interval
    vs = {k: v["vs_reference"] for k, v in body["models"].items() if "vs_reference" in v}
    assert set(vs) == {"random", "popularity", "ials"} and "vs_reference" not in body["models"]["ease"]
    assert vs["popularity"]["reference"] == "ease"
    assert vs["popularity"]["users"] == meta["split_info"]["test_users_with_likes"]
    for name, v in vs.items():
        assert v["ratio"] == pytest.approx(nd[name] / nd["ease"], abs=1e-4)
        assert v["ci95"][0] <= v["ratio"] <= v["ci95"][1]
    assert vs["random"]["ci95"][1] < 1.0  # far below EASE, and the interval says so
    assert "paired bootstrap" in (out / "report.md").read_text()


def test_new_items_split_ranks_only_new_videos(settings, synth_db):
    _, results, meta = run_evaluation(settings, load_config(), ["popularity"], "new-items")
    assert meta["split_info"]["candidates"] > 0
    assert results[0].metrics["coverage@10"] > 0


def test_bad_model_names():
    with pytest.raises(InvalidInput, match="unknown model"):
        resolve_model("magic")
    with pytest.raises(NotFound, match="does not exist"):
        resolve_model("/no/such/model.pt")


def test_cli_gives_one_line_errors(settings, synth_db):
    env = {**os.environ, "DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home)}
    for args, msg in ((["evaluate", "-m", "magic"], "unknown model"),
                      (["evaluate", "--split", "nope"], "unknown split"),
                      (["evaluate", "-m", "./missing.pt"], "does not exist")):
        p = subprocess.run([sys.executable, "-m", "twotower.cli", *args], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1, p.stderr
        assert msg in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "twotower.cli", "evaluate", "-m", "popularity,random"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "| popularity |" in p.stdout
    # under the table: random against popularity (no EASE here), with its interval
    assert "| model | ndcg@10 x popularity | 95% CI (paired bootstrap over users) | users |" in p.stdout
    assert sum(line.startswith("| random |") for line in p.stdout.splitlines()) == 2


def _two_tastes():
    """25 users like tag-a videos and nope tag-b ones, 15 the other way round; 20 videos appear
    only after 2026-06-01 (the new-items cutoff), released later than the 60 old ones."""
    from datetime import UTC, datetime, timedelta

    import polars as pl

    from twotower.data.load import Frames

    t0, cut = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    vids = [(f"old{i}", "ab"[i % 2], t0 + timedelta(days=i)) for i in range(60)] + \
           [(f"new{i}", "ab"[i % 2], cut + timedelta(days=i)) for i in range(20)]
    videos = pl.DataFrame({"id": [v for v, _, _ in vids], "genre": [g for _, g, _ in vids],
                           "product_released_at": [r for _, _, r in vids]})
    tags = pl.DataFrame({"video_id": [v for v, _, _ in vids], "tag_name": [f"tag-{g}" for _, g, _ in vids]})
    rows = []
    for u in range(40):
        taste = "a" if u < 25 else "b"
        for k, (v, g, _) in enumerate(vids):
            old = v.startswith("old")
            if (k + u) % 3:  # two in three videos of each kind, per user
                continue
            when = (t0 + timedelta(days=30 + k % 60, minutes=u)) if old else (cut + timedelta(days=30, minutes=u + k))
            rows.append((f"u{u}", v, "like" if g == taste else "nope", when))
    d = pl.DataFrame(rows, schema=["user_id", "video_id", "decision_type", "created_at"], orient="row")
    profiles = pl.DataFrame({"user_id": [f"u{u}" for u in range(40)]})
    return Frames(profiles, videos.with_columns(pl.lit(None, pl.Utf8).alias("maker"),
                                                pl.lit(None, pl.Datetime("us", "UTC")).alias("created_at")),
                  tags, tags.head(0).rename({"tag_name": "performer_name"}), d)


def test_cold_start_baselines_rank_videos_nobody_decided():
    """On new-items popularity is a constant (AUC 0.5); these can rank the unseen videos."""
    from datetime import UTC, datetime

    from twotower.evaluate import Catalog, build_context, evaluate_recommender, make_split
    from twotower.evaluate.baselines import BASELINES

    f = _two_tastes()
    cat = Catalog.from_frames(f)
    split = make_split(cat, "new-items", cutoff=datetime(2026, 6, 1, tzinfo=UTC))
    assert split.candidates.size == 20
    ctx = build_context(cat, split, f.tags, f)
    got = {n: evaluate_recommender(BASELINES[n](), ctx, [10]).metrics for n in
           ("popularity", "content_knn", "genre_popularity", "recency")}
    assert got["popularity"]["auc"] == 0.5  # every candidate 0: only tie order
    assert got["content_knn"]["auc"] > 0.95  # the taste is the tag
    assert got["genre_popularity"]["auc"] != 0.5 and got["recency"]["auc"] != 0.5
