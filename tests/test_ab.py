"""A/B statistics on served logs with a known answer: a real lift is found and promoted, no lift
is not, and the intervals cover the truth."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from twotower.evaluate import ab

ROOT = Path(__file__).resolve().parents[1]


def simulate(conn, rates: dict[str, float], users: int = 400, lists: int = 3, size: int = 10, seed: int = 0):
    """Each user in one arm (as the hash assigns them), `lists` lists of `size` videos; each
    shown video is answered with probability 0.6 and, if answered, liked with the arm's rate."""
    rng = np.random.default_rng(seed)
    conn.execute("INSERT INTO videos (id) SELECT 'v' || i FROM generate_series(0, 199) i")
    log, decisions = [], []
    for u in range(users):
        arm = list(rates)[u % len(rates)]
        uid = f"u{u}"
        seen = rng.choice(200, size=lists * size, replace=False)
        for k in range(lists):
            vids = [f"v{j}" for j in seen[k * size:(k + 1) * size]]
            log.append((uid, arm, vids))
            for v in vids:
                if rng.random() < 0.6:
                    decisions.append((uid, v, "like" if rng.random() < rates[arm] else "nope"))
    conn.execute("INSERT INTO profiles (user_id) SELECT 'u' || i FROM generate_series(0, %s) i", (users - 1,))
    with conn.cursor().copy("COPY recommendation_log (user_id, model_version, source, video_ids, served_at) "
                            "FROM STDIN") as cp:
        for uid, arm, vids in log:
            cp.write_row((uid, arm, "two_tower", vids, "2026-11-20T00:00:00+00"))
    with conn.cursor().copy("COPY user_video_decisions (user_id, video_id, decision_type, created_at) FROM STDIN") as cp:
        for d in decisions:
            cp.write_row((*d, "2026-11-21T00:00:00+00"))
    conn.commit()


def test_a_real_lift_is_found_and_none_is_not(conn):
    from datetime import UTC, datetime

    simulate(conn, {"a": 0.30, "b": 0.40, "c": 0.30})
    arms = {a.version: a for a in ab.report(ab.per_user(conn, datetime(2026, 1, 1, tzinfo=UTC)), "a")}
    assert arms["a"].users == 134 and arms["a"].shown == 134 * 30
    b, c = arms["b"].vs_control["likes_per_shown"], arms["c"].vs_control["likes_per_shown"]
    assert b.p_value < 0.001 and 0.2 < b.lift < 0.45 and b.lift_ci[0] > 0.1
    assert c.p_value > 0.05 and c.lift_ci[0] < 0 < c.lift_ci[1]
    lo, hi = arms["b"].metrics["like_rate"].ci  # the true like rate of b is 0.40
    assert lo < 0.40 < hi
    assert ab.decide(list(arms.values()), "b", "a", min_lift=0.05).promote
    no = ab.decide(list(arms.values()), "c", "a", min_lift=0.0)
    assert not no.promote and "no significant difference" in no.reason and "users per arm" in no.reason
    high = ab.decide(list(arms.values()), "b", "a", min_lift=0.5)
    assert not high.promote and "below the required" in high.reason
    assert arms["a"].users_needed["likes_per_shown"] > 134  # a 5% lift needs more users than this


def test_the_delta_method_matches_simulation():
    """The standard error of a ratio of per-user sums, against the spread of 400 replications."""
    rng = np.random.default_rng(1)
    est, ses = [], []
    for _ in range(400):
        shown = rng.integers(5, 60, size=300).astype(float)
        p = rng.beta(3, 7, size=300)  # users differ: clustered, not binomial
        liked = rng.binomial(shown.astype(int), p).astype(float)
        e = ab.ratio(liked, shown)
        est.append(e.value)
        ses.append(e.se)
    assert abs(np.mean(ses) / np.std(est) - 1) < 0.15


def test_ab_cli_reports_and_promotes_only_on_evidence(conn, settings):
    simulate(conn, {"ctl": 0.30, "new": 0.42})
    for v in ("ctl", "new"):
        conn.execute("INSERT INTO embedding_model_versions (version, model_path, embedding_dim) VALUES (%s, '/x', 2)", (v,))
        conn.execute("INSERT INTO video_embeddings (model_version, video_id, embedding) VALUES (%s, 'v1', '[1,0]')", (v,))
    conn.execute("UPDATE embedding_model_versions SET is_active = true, is_default = (version = 'ctl'), "
                 "traffic_share = 0.5")
    conn.commit()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home), "COLUMNS": "250"}
    tt = str(ROOT / ".venv" / "bin" / "twotower")
    rep = subprocess.run([tt, "ab", "report", "--days", "3650"], capture_output=True, text=True, env=env, timeout=120)
    assert rep.returncode == 0 and "(control)" in rep.stdout and "users per arm" in rep.stdout, rep.stdout + rep.stderr
    refused = subprocess.run([tt, "ab", "promote", "new", "--min-lift", "0.9", "--days", "3650"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert refused.returncode == 1 and "not promoting new" in refused.stdout
    assert conn.execute("SELECT version FROM embedding_model_versions WHERE is_default").fetchone()[0] == "ctl"
    conn.commit()
    ok = subprocess.run([tt, "ab", "promote", "new", "--min-lift", "0.05", "--days", "3650"], capture_output=True,
                        text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "promoted new over ctl" in ok.stdout, ok.stdout + ok.stderr
    assert conn.execute("SELECT version, traffic_share FROM embedding_model_versions WHERE is_active").fetchall() == [
        ("new", 1.0)]


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_samples_do_not_crash(n):
    e = ab.ratio(np.ones(n), np.ones(n) * 2)
    assert n == 0 and np.isnan(e.value) or e.value == 0.5
