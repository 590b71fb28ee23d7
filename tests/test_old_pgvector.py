"""pgvector 0.7 (HNSW, no iterative index scans): Debian's PostgreSQL 15 with the vendored
pgvector 0.7.4 (`make test` builds it), a cluster of the test's own on a Unix socket. Filtered
searches over-fetch instead of failing on `hnsw.iterative_scan`, in the service and in
`twotower recommend` alike, and still return `limit` undecided videos."""

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import load_world
from tests.test_serve import SVC, app_settings, setup_model, warm_user
from twotower import db, embed
from twotower.config import Settings
from twotower.serve import create_app

PG15 = Path("/usr/lib/postgresql/15/bin")
RUN_AS = "pgserver"


@pytest.fixture(scope="module")
def pg15():
    if not (PG15 / "postgres").exists() or not Path("/usr/share/postgresql/15/extension/vector.control").exists():
        pytest.fail("PostgreSQL 15 with pgvector 0.7.4 is not installed: `make test` installs it (make test-deps)")
    d = Path(tempfile.mkdtemp(prefix="pg15-"))
    d.chmod(0o755)
    shutil.chown(d, RUN_AS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = ["runuser", "-u", RUN_AS, "--"]
    subprocess.run([*run, str(PG15 / "initdb"), "-D", str(d / "data"), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*run, str(PG15 / "pg_ctl"), "-D", str(d / "data"), "-w", "-l", str(d / "log"), "-o",
                    f"-k {d} -c listen_addresses='' -p {port}", "start"], check=True, capture_output=True)
    yield f"postgresql://postgres@/postgres?host={d}&port={port}"
    subprocess.run([*run, str(PG15 / "pg_ctl"), "-D", str(d / "data"), "-m", "fast", "-w", "stop"],
                   capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_filtered_search_over_fetches_on_pgvector_0_7(pg15, tmp_path):
    settings = Settings(DATABASE_URL=pg15, TWOTOWER_HOME=tmp_path / "home")
    with db.connection(url=pg15) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        assert db.pgvector_version(conn)[:2] == (0, 7)
        assert not db.require_hnsw(db.pgvector_version(conn))
        st = db.status(conn, settings)
        assert any("over-fetch" in w for w in st.warnings), st.warnings
        load_world(conn)
        art = setup_model(conn, settings, tmp_path)
        user = warm_user(conn)
        decided = {r[0] for r in conn.execute("SELECT video_id FROM user_video_decisions WHERE user_id = %s", (user,))}
        q = conn.execute("SELECT embedding FROM user_embeddings WHERE user_id = %s", (user,)).fetchone()[0].to_numpy()
        vids, vecs = zip(*[(v, e.to_numpy()) for v, e in conn.execute(
            "SELECT video_id, embedding FROM video_embeddings WHERE model_version = 'v1'")], strict=True)
        scores = np.stack(vecs) @ q
        exact = [vids[i] for i in np.argsort(-scores) if vids[i] not in decided]
        # `twotower recommend`'s path
        rows = embed.search(conn, "v1", art.dim, q, 20, user_id=user)
        assert len(rows) == 20 and not decided & {v for v, _ in rows}
        assert len(set(v for v, _ in rows) & set(exact[:20])) >= 18  # HNSW recall, over-fetched
    with TestClient(create_app(app_settings(settings))) as client:
        for limit in (10, 60, 100):
            r = client.post("/v1/recommendations", json={"user_id": user, "limit": limit, "exclude_impressions": False},
                                headers=SVC)
            assert r.status_code == 200, r.text
            body = r.json()
            got = [i["video_id"] for i in body["items"]]
            assert body["source"] == "two_tower" and len(got) == limit and not decided & set(got)
            assert len(set(got) & set(exact[:limit])) >= 0.9 * limit
        # MMR's tag sketches compare with pgvector's bit Jaccard (<%>, since 0.7): every path
        r = client.post("/v1/recommendations", json={"user_id": user, "limit": 10, "exclude_impressions": False,
                                                     "diversity": 0.5}, headers=SVC)
        assert r.status_code == 200, r.text
        got = [i["video_id"] for i in r.json()["items"]]
        assert len(got) == 10 and not decided & set(got)
    with db.connection(url=pg15) as conn:
        sql = [v for (v,) in conn.execute("SELECT video_id FROM recommend_videos(10, %s, NULL, false, 0.5)", (user,))]
        assert sql == got
