"""Fault drills against a real embedded server of the test's own: a crash right after
acknowledged writes loses none of them; after an outage the service answers normally again
within 2 s of the database accepting connections; terminated backends never switch the service
to its fallback while the database is up."""

import threading
import time
from collections import Counter

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.helpers import load_world
from tests.test_serve import SVC, app_settings, setup_model, warm_user
from twotower import db
from twotower.config import Settings
from twotower.serve import create_app


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """An embedded server only these tests stop and crash; data, a model, its embeddings."""
    home = tmp_path_factory.mktemp("faults")
    embedded = Settings(TWOTOWER_HOME=home, DATABASE_URL=None)
    url = db.database_url(embedded)
    with db.connection(url=url) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        load_world(conn)
        setup_model(conn, Settings(DATABASE_URL=url, TWOTOWER_HOME=home), home)
        video = conn.execute("SELECT id FROM videos ORDER BY id LIMIT 1").fetchone()[0]
        user = warm_user(conn)
    yield embedded, Settings(DATABASE_URL=url, TWOTOWER_HOME=home), video, user
    db.stop_embedded(embedded)


def restart(embedded: Settings) -> float:
    """Start the stopped server; the moment it accepts connections again."""
    db.database_url(embedded)
    return time.monotonic()


class Load:
    """Requests from a few threads until stopped: (monotonic time, status, body) per answer."""

    def __init__(self, client: TestClient, make, threads: int = 3) -> None:
        self.client, self.make, self.out, self.stop = client, make, [], threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(threads)]

    def _run(self, k: int) -> None:
        i = 0
        while not self.stop.is_set():
            path, body = self.make(k, i)
            t0 = time.monotonic()
            r = self.client.post(path, json=body, headers=SVC)
            with self.lock:
                self.out.append((t0, time.monotonic(), r.status_code, body, r.json()))
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_acknowledged_decisions_survive_a_crash(own_server):
    embedded, settings, video, _ = own_server
    with db.connection(url=settings.database_url) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    with TestClient(create_app(app_settings(settings))) as client:
        def decision(k, i):
            return "/v1/decisions", {"user_id": f"crash-{k}-{i}", "video_id": video, "decision_type": "like",
                                     "refresh_embedding": False}

        with Load(client, decision, threads=4) as load:
            time.sleep(1.5)
            db.stop_embedded(embedded, mode="immediate")  # the server dies mid-stream
            time.sleep(0.5)
        acked = [b["user_id"] for _, _, status, b, _ in load.out if status == 200]
        statuses = Counter(s for _, _, s, _, _ in load.out)
        assert len(acked) > 50 and set(statuses) <= {200, 503}, statuses
        restart(embedded)
    with db.connection(url=settings.database_url) as conn:
        saved = {r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions WHERE user_id LIKE 'crash-%%'")}
        lost = [u for u in acked if u not in saved]
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged decisions lost"
        conn.execute("DELETE FROM user_video_decisions WHERE user_id LIKE 'crash-%%'")


def test_service_recovers_within_two_seconds_of_the_database(own_server):
    embedded, settings, video, user = own_server
    budget = 2.0
    with TestClient(create_app(app_settings(settings))) as client:
        def mixed(k, i):
            if k == 0:
                return "/v1/decisions", {"user_id": user, "video_id": video, "decision_type": "like",
                                         "refresh_embedding": False}
            return "/v1/recommendations", {"user_id": user, "limit": 10}

        with Load(client, mixed) as load:
            time.sleep(0.5)
            db.stop_embedded(embedded)
            down_at = time.monotonic()
            time.sleep(4.0)
            up_at = restart(embedded)
            time.sleep(3.0)
        rows = load.out
        assert all(s < 500 or s == 503 for _, _, s, _, _ in rows)
        recs = [(t0, t1, b) for t0, t1, s, _, b in rows if "items" in b]
        assert any(b["source"] == "fallback" for t0, _, b in recs if down_at + 1.5 < t0 < up_at), \
            "the outage was never noticed"
        normal = [t1 for t0, t1, b in recs if t0 >= up_at and b["source"] == "two_tower"]
        assert normal and normal[0] - up_at < 2.0, f"first normal answer {normal[0] - up_at:.2f} s after restart"
        slow_503 = [t1 - t0 for t0, t1, s, _, _ in rows if s == 503 and t1 - t0 > budget + 0.5]
        assert not slow_503, f"503s slower than the request budget: {slow_503[:5]}"
        assert sum(1 for _, _, s, _, _ in rows if s == 503) > 0  # decisions were refused, not hung


def test_terminated_backends_do_not_switch_to_the_fallback(own_server):
    _, settings, _, user = own_server
    with TestClient(create_app(app_settings(settings))) as client, \
            psycopg.connect(settings.database_url, autocommit=True) as admin:
        def recommendation(k, i):
            return "/v1/recommendations", {"user_id": user, "limit": 10}

        with Load(client, recommendation) as load:
            for _ in range(5):
                time.sleep(0.4)
                killed = admin.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                       "AND backend_type = 'client backend'").fetchone()[0]
                assert killed > 0
            time.sleep(0.4)
        sources = Counter(b.get("source") for _, _, s, _, b in load.out)
        statuses = Counter(s for _, _, s, _, _ in load.out)
        assert set(statuses) == {200}, statuses
        assert sources["fallback"] == 0 and sources["two_tower"] > 20, sources
