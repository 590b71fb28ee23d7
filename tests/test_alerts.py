"""The shipped alert rules (deploy/prometheus/alerts.yml) are valid and fire when, and only when,
they should (`promtool test rules`); the service exports the batch and staleness gauges they use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import load_world
from tests.test_serve import SVC, app_settings, setup_model
from twotower.errors import ArtifactError
from twotower.serve import create_app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: `make test` installs prometheus (test-deps)")
def test_alert_rules_pass_their_unit_tests():
    check = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_the_rules_name_only_metrics_the_service_exports(conn, settings, tmp_path):
    import re

    from twotower import batch
    from twotower.config import BatchConfig

    load_world(conn)
    setup_model(conn, settings, tmp_path)
    batch.run_batch_update(settings, BatchConfig())
    path = conn.execute("SELECT model_path FROM embedding_model_versions WHERE version = 'v1'").fetchone()[0]
    conn.execute("UPDATE embedding_model_versions SET model_path = '/nowhere' WHERE version = 'v1'")
    conn.commit()
    with pytest.raises(ArtifactError):  # a failed run: the model does not load
        batch.run_batch_update(settings, BatchConfig(max_retries=0))
    conn.execute("UPDATE embedding_model_versions SET model_path = %s WHERE version = 'v1'", (path,))
    conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) "
                 "SELECT user_id, (SELECT id FROM videos ORDER BY id DESC LIMIT 1), 'like' FROM profiles "
                 "ON CONFLICT DO NOTHING")
    conn.commit()
    with TestClient(create_app(app_settings(settings))) as client:
        client.app.state.service.cfg.serving.ops_refresh_seconds = 0.1
        text = client.get("/metrics", headers=SVC).text
    assert 'twotower_batch_last_failed{job="embed-refresh"} 1.0' in text
    assert 'twotower_batch_last_success_timestamp_seconds{job="embed-refresh"}' in text
    assert re.search(r'twotower_stale_user_embeddings\{version="v1"\} [1-9]', text)
    assert re.search(r'twotower_videos_without_embedding\{version="v1"\} 0', text)
    rules = (DEPLOY / "alerts.yml").read_text()
    used = set(re.findall(r"\b(twotower_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", rules))
    exported = set(re.findall(r"^# TYPE (twotower_[a-z0-9_]+)", text, re.M))
    assert used <= exported, used - exported


def test_the_grafana_dashboard_queries_are_valid_promql_over_exported_metrics(tmp_path):
    """Every panel's query parses (promtool checks it as a recording rule) and names only
    metrics the service exports (the list the rules test reads from a live /metrics)."""
    import json
    import re

    import yaml

    dash = json.loads((DEPLOY.parent / "grafana" / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    names = set(re.findall(r"\b(twotower_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", " ".join(exprs)))
    rules_metrics = set(re.findall(r"\b(twotower_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", (DEPLOY / "alerts.yml").read_text()))
    known = rules_metrics | {"twotower_model_traffic_share", "twotower_db_pool_connections",
                             "twotower_batch_last_duration_seconds", "twotower_batch_failures_24h",
                             "twotower_videos_without_embedding"}
    assert names <= known, names - known
    if PROMTOOL:
        f = tmp_path / "panels.yml"
        f.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": [
            {"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
        r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
