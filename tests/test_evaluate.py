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
    p = subprocess.run([sys.executable, "-m", "twotower.cli", "evaluate", "-m", "popularity"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "| popularity |" in p.stdout
