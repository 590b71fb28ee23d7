"""The Supabase Edge Functions (supabase/functions, Deno + onnxruntime-web) against the Python
implementation: the same input vector for every feature block (exact), the same ONNX output
(1e-5), the same top-20 as the Python service and as recommend_videos, the same auth and error
answers; a tampered artifact is refused before anything is served. Runs under the Deno that
`make install` puts in node_modules (npm ci), with no network."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEMPLATE, _with_db
from tests.helpers import S3_KEYS as KEYS
from tests.helpers import exported, load_world
from tests.test_serve import SECRET, SERVICE, SVC, app_settings, token
from twotower import db, edge_functions, embed, registry
from twotower.config import EmbeddingConfig, Settings
from twotower.data import synth
from twotower.embed import user_vectors_online
from twotower.export import load_artifacts
from twotower.serve import create_app
from twotower.users import forget

ROOT = Path(__file__).resolve().parents[1]
try:
    DENO, _ = edge_functions.deno(edge_functions.REPO_FUNCTIONS)
except Exception:  # noqa: BLE001
    DENO = None
pytestmark = pytest.mark.skipif(DENO is None, reason="Deno is not installed: `make install` runs npm ci")
SPEC = synth.SynthSpec(users=230, videos=400, decisions=8000, seed=5)


@dataclass
class World:
    url: str
    settings: Settings
    versions: dict[str, str]  # version -> user_vector mode


def _version(conn, settings, tmp: Path, version: str, kind: str, extra=None) -> str:
    folder = exported(conn, settings, tmp / version, version, kind, extra=extra)
    registry.register(conn, folder, settings.path("artifacts"))
    art = load_artifacts(settings.path("artifacts") / version)
    embed.embed_videos(conn, art, EmbeddingConfig())
    embed.embed_all_users(conn, art)
    return art.meta["user_vector"]


def _edge_cases(conn) -> None:
    """Users the generator does not make: one who liked only videos without tags or price, one
    who liked a video whose tag the model never saw, one with only nopes, one never active."""
    conn.execute("INSERT INTO videos (id, title, price) SELECT 'bare-' || i, 'bare', NULL FROM generate_series(1, 3) i")
    conn.execute("INSERT INTO profiles (user_id, created_at) VALUES ('edge-bare', now() - interval '3 days'), "
                 "('edge-unknown-tag', now() - interval '40 days'), ('edge-nopes', now()), ('edge-cold', now())")
    conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at) "
                 "SELECT 'edge-bare', 'bare-' || i, 'like', now() - i * interval '1 hour' FROM generate_series(1, 3) i")
    liked = conn.execute("SELECT id FROM videos WHERE id NOT LIKE 'bare-%%' ORDER BY id LIMIT 4").fetchall()
    conn.execute("INSERT INTO video_tags (video_id, tag_name) VALUES (%s, 'a-tag-nobody-trained-on')", (liked[0][0],))
    for i, (v,) in enumerate(liked):
        conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at) "
                     "VALUES ('edge-unknown-tag', %s, 'like', now() - %s * interval '1 day'), "
                     "('edge-nopes', %s, 'nope', now() - %s * interval '1 minute')", (v, i, v, i))


@pytest.fixture(scope="module")
def world(admin_url, tmp_path_factory) -> World:
    name = "edge_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    url = _with_db(admin_url, name)
    tmp = tmp_path_factory.mktemp("edge")
    settings = Settings(DATABASE_URL=url, TWOTOWER_HOME=tmp / "home")
    with db.connection(url=url) as conn:
        load_world(conn, SPEC)
        versions = {"hyb": _version(conn, settings, tmp, "hyb", "hybrid"),
                    "lin": _version(conn, settings, tmp, "lin", "hybrid", ["model.user_content=false"]),
                    "mlp": _version(conn, settings, tmp, "mlp", "mlp")}
        registry.activate(conn, "hyb")
        _edge_cases(conn)
        conn.commit()
    yield World(url, settings, versions)
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def edge_server(w: World, **env: str):
    """`twotower edge serve` on a free port; stopped afterwards."""
    port = _free_port()
    cmd, cwd = edge_functions.serve_command(port, w.url)
    full = {**edge_functions.serve_env(w.url, w.settings.path("artifacts")),
            "TWOTOWER_JWT_SECRET": SECRET, "TWOTOWER_SERVICE_KEY": SERVICE, **env}
    log = open(os.environ.get("TWOTOWER_EDGE_LOG", os.devnull), "a")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, cwd=cwd, env=full, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                raise AssertionError(f"edge serve exited with {proc.returncode}")
            time.sleep(0.1)
        with httpx.Client(base_url=base + "/functions/v1", timeout=30) as client:
            client.proc = proc
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def users(conn, n_warm: int = 200) -> list[str]:
    warm = [r[0] for r in conn.execute("SELECT user_id FROM profiles WHERE user_id NOT LIKE 'edge-%%' "
                                       "ORDER BY user_id LIMIT %s", (n_warm,))]
    return warm + ["edge-bare", "edge-unknown-tag", "edge-nopes", "edge-cold"]


def _probe(base: Path, version: str, mode: str, features: list[dict]) -> dict:
    cmd = [DENO, "run", "--no-prompt", "--allow-read", "--allow-env", "--node-modules-dir=manual",
           str(ROOT / "tests" / "edge" / "parity.ts")]
    r = subprocess.run(cmd, input=json.dumps({"base": str(base), "version": version, "mode": mode,
                                              "features": features}),
                       capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "DENO_NO_UPDATE_CHECK": "1"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("version", ["hyb", "mlp"])
def test_input_vector_and_onnx_output_equal_python(world, version):
    art = load_artifacts(world.settings.path("artifacts") / version)
    with db.connection(url=world.url) as conn:
        ids = users(conn)
        vecs, js = user_vectors_online(conn, art, ids)
    known = [(u, j, v) for u, j, v in zip(ids, js, vecs, strict=True) if j is not None]
    assert len(known) >= 200 and "edge-cold" in {u for u, *_ in known}  # a profile without decisions
    mode = art.meta["user_vector"]
    got = _probe(world.settings.path("artifacts"), version, "onnx" if version == "mlp" else mode,
                 [j for _, j, _ in known])
    pipe = art.pipeline
    blocks = {b["name"]: b for b in json.loads((art.path / "feature_schema.json").read_text())["user"]["blocks"]}
    for (u, j, v), x_ts, y_ts in zip(known, got["inputs"], got["outputs"], strict=True):
        x_py = pipe.user_vector_from_json(j)
        x_ts = np.asarray(x_ts, dtype=np.float32)
        for name, b in blocks.items():  # every block: exact (float32 for float32)
            s = slice(b["offset"], b["offset"] + b["length"])
            assert np.array_equal(x_ts[s], x_py[s]), (u, name)
        if mode == "sql+onnx":  # the content MLP alone: Python's onnxruntime on the same file
            import onnxruntime as ort

            sess = ort.InferenceSession(str(art.path / "user_content.onnx"))
            y_py = sess.run(None, {"features": x_py[None, :]})[0][0]
        else:
            y_py = v
        np.testing.assert_allclose(np.asarray(y_ts), y_py, atol=1e-5, err_msg=u)
    tagless = next(j for u, j, _ in known if u == "edge-bare")
    assert tagless["liked_tags"] == {} and tagless["mean_price"] is None
    assert "a-tag-nobody-trained-on" in next(j for u, j, _ in known if u == "edge-unknown-tag")["liked_tags"]


def _top(items) -> list[str]:
    return [i["video_id"] for i in items]


def _canon(items) -> list[str]:
    """The list with near-ties (scores within 1e-5) put in id order: the three paths build the
    query vector with different runtimes, so two videos that tie may swap between them."""
    return [i["video_id"] for i in sorted(items, key=lambda i: (-round(i["score"], 5), i["video_id"]))]


@pytest.mark.parametrize("version", ["hyb", "lin", "mlp"])
def test_top20_equals_the_service_and_recommend_videos(world, version):
    with db.connection(url=world.url) as conn:
        registry.activate(conn, version)
        # Exact search: the three paths build the query vector with different runtimes (1e-7
        # apart), and an approximate index may walk its graph differently for such twins where
        # scores nearly tie (seen with the barely trained mlp). The index path is test_rpc's.
        embed.drop_index(conn, version)
        conn.commit()
        ids = [r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions WHERE decision_type = 'like' "
                                          "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 30")] + ["edge-bare", "edge-cold",
                                                                                             "nobody-at-all"]
        with edge_server(world) as edge, TestClient(create_app(app_settings(world.settings))) as svc:
            for u in ids:
                # the same list three times: not the deck (impressions would rightly move it on)
                body = {"user_id": u, "limit": 20, "exclude_impressions": False}
                e = edge.post("two_tower_recommendations", json=body, headers=SVC)
                assert e.status_code == 200, e.text
                e = e.json()
                p = svc.post("/v1/recommendations", json=body, headers=SVC).json()
                r = conn.execute("SELECT video_id, source, score FROM public.recommend_videos(20, %s, NULL, false)",
                                 (u,)).fetchall()
                conn.commit()
                if u == "edge-bare" and world.versions[version] != "sql":
                    # joined after the batch embed: SQL has no stored vector for a model it cannot
                    # run, until update_user_embedding stores one
                    assert {x[1] for x in r} == {"cold_start"}
                    up = edge.post("update_user_embedding", json={"user_id": u}, headers=SVC)
                    assert up.status_code == 200 and version in up.json()["versions"], up.text
                    r = conn.execute("SELECT video_id, source, score FROM public.recommend_videos(20, %s, NULL, false)",
                                     (u,)).fetchall()
                    conn.commit()
                    assert {x[1] for x in r} == {"two_tower_stored"}
                assert len(e["items"]) == 20
                assert _canon(e["items"]) == _canon(p["items"]), u
                np.testing.assert_allclose([i["score"] for i in e["items"]], [i["score"] for i in p["items"]],
                                           atol=1e-4)
                assert {i["video_id"]: i["reasons"] for i in e["items"]} == {i["video_id"]: i["reasons"] for i in p["items"]}, u
                assert e["model_version"] == p["model_version"] and e["user_id"] == u
                # edge-bare liked only videos the model never saw: a linear model knows nothing of them
                placed = u in ids[:30] or (u == "edge-bare" and world.versions[version] != "sql")
                want = "two_tower" if placed else "cold_start"
                assert e["source"] == p["source"] == want, u
                assert _canon([{"video_id": x[0], "score": x[2]} for x in r]) == _canon(e["items"]), u
                if u in ids[:3]:  # MMR: the same function re-ranks in every path
                    body = {**body, "diversity": 0.6}
                    e2 = edge.post("two_tower_recommendations", json=body, headers=SVC).json()
                    p2 = svc.post("/v1/recommendations", json=body, headers=SVC).json()
                    assert "items" in e2 and "items" in p2, (e2, p2)
                    assert _top(e2["items"]) == _top(p2["items"]) != _top(e["items"]), u
                if u == ids[0]:  # exploration: Thompson draws differ, the dealing does not
                    conn.execute("SELECT twotower.refresh_explore(interval '0')")
                    conn.commit()
                    body = {"user_id": u, "limit": 20, "exclude_impressions": False, "explore_share": 0.1}
                    e3 = edge.post("two_tower_recommendations", json=body, headers=SVC).json()
                    p3 = svc.post("/v1/recommendations", json=body, headers=SVC).json()
                    for x in (e3, p3):
                        assert x["source"] == "two_tower", x
                        assert [k for k, i in enumerate(x["items"]) if i.get("source") == "explore"] == [6, 13]
                        assert [i["video_id"] for k, i in enumerate(x["items"]) if k not in (6, 13)] == _top(e["items"])[:18]
        embed.build_index(conn, version, load_artifacts(world.settings.path("artifacts") / version).dim,
                          EmbeddingConfig())
        registry.activate(conn, "hyb")
        conn.commit()


def test_update_user_embedding_stores_what_the_service_computes(world):
    with db.connection(url=world.url) as conn, edge_server(world) as edge:
        u = conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                         ).fetchone()[0]
        conn.execute("DELETE FROM user_embeddings WHERE user_id = %s", (u,))
        conn.commit()
        r = edge.post("update_user_embedding", json={"user_id": u}, headers=token(u))
        assert r.status_code == 200 and r.json()["versions"] == ["hyb"], r.text
        stored = conn.execute("SELECT embedding FROM user_embeddings WHERE model_version = 'hyb' AND user_id = %s",
                              (u,)).fetchone()[0].to_numpy()
        art = load_artifacts(world.settings.path("artifacts") / "hyb")
        np.testing.assert_allclose(stored, user_vectors_online(conn, art, [u])[0][0], atol=1e-5)
        assert edge.post("update_user_embedding", json={"user_id": "nobody-at-all"}, headers=SVC).status_code == 404
        assert edge.post("update_user_embedding", json={"user_id": u}, headers=token("someone-else")).status_code == 403
        conn.commit()


def test_a_like_written_with_sql_moves_the_next_answer(world):
    with db.connection(url=world.url) as conn, edge_server(world) as edge:
        u = "edge-unknown-tag"
        before = edge.post("two_tower_recommendations", json={"user_id": u, "limit": 10}, headers=token(u)).json()
        top = before["items"][0]["video_id"]
        conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'like')",
                     (u, top))
        conn.commit()
        after = edge.post("two_tower_recommendations", json={"user_id": u, "limit": 10}, headers=token(u)).json()
        assert top not in _top(after["items"])
        assert [i["score"] for i in after["items"]] != [i["score"] for i in before["items"][1:]]
        conn.execute("DELETE FROM user_video_decisions WHERE user_id = %s AND video_id = %s", (u, top))
        conn.commit()


BAD_BODIES = [b"", b"not json", b"[]", b'{"user_id": 5}', b'{"user_id": ""}', b'{"user_id": " u"}',
              b'{"user_id": "u\\u200b"}', b'{"user_id": "u", "limit": "20"}', b'{"user_id": "u", "limit": 20.0}',
              b'{"user_id": "u", "limit": 0}', b'{"user_id": "u", "limit": 101}', b'{"user_id": "u", "extra": 1}',
              b'{"limit": 3}', b'{"user_id": "' + b"x" * 129 + b'"}', b'{"user_id": "u", "deck_id": ""}',
              b'{"user_id": "u", "deck_id": 7}', b'{"user_id": "u", "exclude_impressions": 1}',
              b'{"user_id": "u", "diversity": 1.5}', b'{"user_id": "u", "diversity": -0.1}',
              b'{"user_id": "u", "diversity": "0.5"}', b'{"user_id": "u", "diversity": true}',
              b'{"user_id": "u", "explore_share": 2}', b'{"user_id": "u", "explore_share": null, "x": 1}']


def test_auth_and_errors_answer_as_the_service(world):
    now = int(time.time())
    svc_jwt = jwt.encode({"role": "service_role", "iss": "supabase", "exp": now + 60}, SECRET, algorithm="HS256")
    anon = jwt.encode({"role": "anon", "iss": "supabase", "exp": now + 60}, SECRET, algorithm="HS256")
    cases = [  # (headers, body, status)
        ({}, {"user_id": "u001"}, 401),
        ({"Authorization": "Basic abc"}, {"user_id": "u001"}, 401),
        (token("u001"), {"user_id": "u001"}, 200),
        (token("u001"), {"user_id": "u002"}, 403),
        (token("u001", exp_in=-10), {"user_id": "u001"}, 401),
        (token("u001", secret="another-secret"), {"user_id": "u001"}, 401),
        (token("u001", aud="somewhere-else"), {"user_id": "u001"}, 401),
        ({"Authorization": f"Bearer {anon}"}, {"user_id": "u001"}, 401),
        ({"Authorization": f"Bearer {svc_jwt}"}, {"user_id": "u002"}, 200),
        (SVC, {"user_id": "u002"}, 200),
    ]
    with edge_server(world) as edge, TestClient(create_app(app_settings(world.settings))) as svc:
        for headers, body, status in cases:
            e = edge.post("two_tower_recommendations", json=body, headers=headers)
            p = svc.post("/v1/recommendations", json=body, headers=headers)
            assert e.status_code == p.status_code == status, (headers, e.text, p.text)
            if status != 200:
                # ours word for word; after "invalid token:" each JWT library words its own reason
                assert e.json()["detail"].split(":")[0] == p.json()["detail"].split(":")[0], (e.text, p.text)
        for raw in BAD_BODIES:
            h = {**SVC, "Content-Type": "application/json"}
            e = edge.post("two_tower_recommendations", content=raw, headers=h)
            p = svc.post("/v1/recommendations", content=raw, headers=h)
            assert e.status_code == p.status_code == 422, (raw, e.text, p.text)
            assert [x["loc"] for x in e.json()["errors"]] == [x["loc"] for x in p.json()["errors"]], raw
        big = {**SVC, "Content-Type": "application/json"}
        assert edge.post("two_tower_recommendations", content=b"{" + b" " * 70_000 + b"}", headers=big).status_code == 413
        assert edge.get("two_tower_recommendations").status_code == 405
        assert edge.options("two_tower_recommendations").status_code == 204
        assert edge.post("nothing_here", json={}).status_code == 404


def test_jwks_keys_verify_user_tokens(world, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}))
    claims = {"sub": "u001", "aud": "authenticated", "role": "authenticated", "exp": int(time.time()) + 60}
    good = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
    other = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"})
    unknown = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k9"})
    with edge_server(world, TWOTOWER_JWKS_URL=str(tmp_path / "jwks.json")) as edge:
        def status(t):
            return edge.post("two_tower_recommendations", json={"user_id": "u001"},
                             headers={"Authorization": f"Bearer {t}"}).status_code
        assert status(good) == 200
        assert status(other) == 401  # forged with another key under the same kid
        assert status(unknown) == 401  # a kid the JWKS lacks falls back to the secret, which fails
        assert edge.post("two_tower_recommendations", json={"user_id": "u001"}, headers=token("u001")).status_code == 200


def test_onboarding_and_nopes_answer_as_the_service(world):
    """A user without likes who picked tags gets the onboarding deck from the function too, for a
    profile without decisions and for one with only nopes (whose vector the function builds)."""
    with db.connection(url=world.url) as conn, edge_server(world) as edge, \
            TestClient(create_app(app_settings(world.settings))) as svc:
        tag = conn.execute("SELECT tag_name FROM video_tags GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()[0]
        for u in ("edge-cold", "edge-nopes"):
            conn.execute("SELECT public.twotower_set_preferences(ARRAY[%s], '{}', '{}', %s)", (tag, u))
            conn.commit()
            body = {"user_id": u, "limit": 10, "exclude_impressions": False}
            e = edge.post("two_tower_recommendations", json=body, headers=SVC).json()
            p = svc.post("/v1/recommendations", json=body, headers=SVC).json()
            assert e["source"] == p["source"] == "onboarding", (u, e, p)
            assert _canon(e["items"]) == _canon(p["items"]) and all(i["reasons"] == ["your picks"] for i in e["items"])
            conn.execute("DELETE FROM twotower.user_preferences WHERE user_id = %s", (u,))
            conn.commit()
        # one like: a ranked deck with ceil(10 (1 - 1/10)) = 9 of the picks' cards dealt in, marked
        u = "edge-fading"
        video = conn.execute("SELECT min(video_id) FROM video_tags WHERE tag_name = %s", (tag,)).fetchone()[0]
        conn.execute("INSERT INTO profiles (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (u,))
        conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES (%s, %s, 'like')",
                     (u, video))
        conn.execute("SELECT public.twotower_set_preferences(ARRAY[%s], '{}', '{}', %s)", (tag, u))
        conn.commit()
        try:
            body = {"user_id": u, "limit": 10, "exclude_impressions": False}
            e = edge.post("two_tower_recommendations", json=body, headers=SVC).json()
            p = svc.post("/v1/recommendations", json=body, headers=SVC).json()
            assert e["source"] == p["source"] == "two_tower", (e, p)
            assert [i.get("source") for i in e["items"]] == [i.get("source") for i in p["items"]]
            assert sum(i.get("source") == "onboarding" for i in e["items"]) == 9
            assert _canon(e["items"]) == _canon(p["items"])
        finally:
            forget(conn, u)
            conn.execute("DELETE FROM user_video_decisions WHERE user_id = %s", (u,))
            conn.execute("DELETE FROM profiles WHERE user_id = %s", (u,))
            conn.commit()


def test_a_tampered_artifact_is_refused_before_serving(world, tmp_path):
    store = tmp_path / "store"
    b = edge_functions.bundle(world.settings.path("artifacts") / "hyb", store)
    assert b.mode == "sql+onnx" and "user_tower.onnx" not in b.files and "user_content.onnx" in b.files
    onnx = b.folder / "user_content.onnx"
    data = bytearray(onnx.read_bytes())
    data[-20] ^= 0xFF
    onnx.write_bytes(bytes(data))
    u = "edge-unknown-tag"
    with edge_server(world, TWOTOWER_ARTIFACTS=str(store)) as edge:
        r = edge.post("two_tower_recommendations", json={"user_id": u, "limit": 5}, headers=SVC)
        assert r.status_code == 503 and "does not match its SHA256" in r.json()["detail"], r.text
        assert edge.post("update_user_embedding", json={"user_id": u}, headers=SVC).status_code == 503
    (b.folder / "manifest.json").unlink()
    with edge_server(world, TWOTOWER_ARTIFACTS=str(store)) as edge:
        r = edge.post("two_tower_recommendations", json={"user_id": u, "limit": 5}, headers=SVC)
        assert r.status_code == 503 and "manifest.json" in r.json()["detail"], r.text
    edge_functions.bundle(world.settings.path("artifacts") / "hyb", store)  # a good bundle serves
    with edge_server(world, TWOTOWER_ARTIFACTS=str(store)) as edge:
        assert edge.post("two_tower_recommendations", json={"user_id": u, "limit": 5}, headers=SVC).status_code == 200


def test_database_down_is_one_line_503(world):
    bad = Settings(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", TWOTOWER_HOME=world.settings.home)
    w = World(bad.database_url, world.settings, world.versions)
    with edge_server(w) as edge:
        r = edge.post("two_tower_recommendations", json={"user_id": "u001"}, headers=SVC)
        assert r.status_code == 503 and r.json()["detail"] == "the database is unreachable; retry shortly", r.text


def test_the_functions_type_check():
    """`deno check`, as `supabase functions deploy` would compile them (strict TypeScript)."""
    files = [str(ROOT / "supabase" / "functions" / f / "index.ts") for f in edge_functions.FUNCTIONS]
    r = subprocess.run([DENO, "check", "--node-modules-dir=manual", *files,
                        str(ROOT / "supabase" / "functions" / "_shared" / "serve_local.ts")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"})
    assert r.returncode == 0, r.stderr


def test_edge_cli_bundles_and_says_what_is_wrong(world, tmp_path):
    env = {**os.environ, "TWOTOWER_HOME": str(world.settings.home), "DATABASE_URL": world.url}
    tt = str(ROOT / ".venv" / "bin" / "twotower")
    ok = subprocess.run([tt, "edge", "bundle", "--version", "mlp", "--to", str(tmp_path / "b")],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "b" / "mlp").iterdir()) == sorted(
        ["manifest.json", *edge_functions.NEEDS["onnx"]])
    assert "static_files" in ok.stdout
    bad = subprocess.run([tt, "edge", "bundle", "--version", "no-such-version"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 1 and "no artifact folder for version no-such-version" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    port = subprocess.run([tt, "edge", "serve", "--port", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert port.returncode == 2 and "1-65535" in port.stderr


def test_bundles_are_read_from_a_url_like_a_storage_bucket(world, tmp_path):
    """TWOTOWER_ARTIFACTS as an http(s) base (a Supabase Storage bucket's URL): fetched, verified."""
    import functools
    import http.server
    import threading

    store = tmp_path / "bucket"
    edge_functions.bundle(world.settings.path("artifacts") / "hyb", store)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(store))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        with edge_server(world, TWOTOWER_ARTIFACTS=base) as edge:
            r = edge.post("two_tower_recommendations", json={"user_id": "edge-unknown-tag", "limit": 5}, headers=SVC)
            assert r.status_code == 200 and r.json()["source"] == "two_tower", r.text
        with edge_server(world, TWOTOWER_ARTIFACTS=base + "/nothing-here") as edge:
            r = edge.post("two_tower_recommendations", json={"user_id": "edge-unknown-tag", "limit": 5}, headers=SVC)
            assert r.status_code == 503 and "HTTP 404" in r.json()["detail"], r.text
    finally:
        srv.shutdown()


def test_a_version_pushed_to_s3_storage_is_served_by_the_functions(world, s3_endpoint, monkeypatch):
    """`models push` to an S3-compatible store, then the functions read that very layout
    (`<prefix>/<version>/<file>`) over HTTP, as from a public Supabase Storage bucket."""
    from twotower import storage

    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    s3 = storage.client(s3_endpoint)
    s3.create_bucket(Bucket="edge-models")
    s3.put_bucket_policy(Bucket="edge-models", Policy=json.dumps({  # a public bucket, as Supabase offers
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::edge-models/*"}]}))
    t = storage.push(world.settings.path("artifacts") / "hyb", "s3://edge-models/prod", s3)
    assert not t.skipped
    with edge_server(world, TWOTOWER_ARTIFACTS=f"{s3_endpoint}/edge-models/prod") as edge:
        r = edge.post("two_tower_recommendations", json={"user_id": "edge-unknown-tag", "limit": 5}, headers=SVC)
        assert r.status_code == 200 and r.json()["source"] == "two_tower" and len(r.json()["items"]) == 5, r.text
    s3.put_object(Bucket="edge-models", Key="prod/hyb/normalizer.json", Body=b"{}")  # tampered in the bucket
    with edge_server(world, TWOTOWER_ARTIFACTS=f"{s3_endpoint}/edge-models/prod") as edge:
        r = edge.post("two_tower_recommendations", json={"user_id": "edge-unknown-tag", "limit": 5}, headers=SVC)
        assert r.status_code == 503, r.text
