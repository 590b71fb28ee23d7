"""The Supabase Edge Function beside the SQL RPC, the Python service and the bare query.

    python bench/edge.py --videos 50000        # ~6 minutes with the world build; needs wrk
    python bench/edge.py --cold-only           # cold start and memory only, at 50k and 1M videos

The world is bench/serve.py's (10k users, 50k videos, 1M decisions) with bench/_world.py's
hybrid model, whose user tower keeps its content MLP, so its user vector is "sql+onnx": the
function runs user_content.onnx and the database adds the history sum (the case that needs the
function; config/best.yaml's model is "sql" and needs no model file there). The function runs under
`twotower edge serve` (Deno, one isolate) from a bundle made by `twotower edge bundle`.

1. Interleaved user by user, 1,000 random users, one request at a time: the bare prepared
   pgvector query (stored vector, decided filter), `recommend_videos(20)` as PostgREST runs it
   for a signed-in user (stored-vector path for this model), the Edge Function over HTTP and the
   Python service over HTTP (same minimal socket client for both). Then the Edge Function for
   300 of them with their stored vectors removed: the vector built on every request.
2. Saturation with wrk (16 connections, 15 s) against the Edge Function: requests/s, errors.
3. Cold start and memory: a fresh `edge serve` process until its first answer, and (with
   --cold-only, or after 1+2) the artifact load alone (read, SHA256, onnxruntime-web session,
   first run) for the bundle each mode needs at 50k and 1M videos, with the peak RSS: "sql+onnx"
   (user_content.onnx) against "onnx" (the whole user tower, whose history table grows with the
   catalogue). Those models have random weights of the real shapes: load time and memory depend
   on sizes, not values.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import httpx  # noqa: E402
import numpy as np  # noqa: E402
from _common import git_commit, machine, scratch_home, write_json  # noqa: E402
from _world import build_world  # noqa: E402
from serve import SECRET, Bare, Client, token, wrk  # noqa: E402

from twotower import db, edge_functions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EDGE_PATH = "/functions/v1/two_tower_recommendations"


def pct(xs, p) -> float:
    return round(float(np.percentile(xs, p)), 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, path: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"{url} did not start")


def start_edge(database_url: str, bundles: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    cmd, cwd = edge_functions.serve_command(port, database_url)
    env = {**edge_functions.serve_env(database_url, bundles), "TWOTOWER_ARTIFACTS": str(bundles),
           "TWOTOWER_JWT_SECRET": SECRET}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait(url, proc, "/healthz")
    return proc, url, (time.perf_counter() - t0) * 1000


def rss_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    get = lambda k: round(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024, 1)  # noqa: E731
    return {"rss_mb": get("VmRSS"), "peak_rss_mb": get("VmHWM")}


def cold_first_answer(database_url: str, bundles: Path, user: str) -> dict:
    """A fresh process: until it listens, then the first answer (artifact verified and loaded,
    onnxruntime-web compiled, first queries), then a warm one."""
    proc, url, listen_ms = start_edge(database_url, bundles)
    try:
        c = Client(url)
        auth = f"Bearer {token(user)}"
        t0 = time.perf_counter()
        status, body = c.recommend(user, auth, path=EDGE_PATH)
        first = (time.perf_counter() - t0) * 1000
        assert status == 200, body[:300]
        t0 = time.perf_counter()
        c.recommend(user, auth, path=EDGE_PATH)
        second = (time.perf_counter() - t0) * 1000
        return {"until_listening_ms": round(listen_ms, 1), "first_answer_ms": round(first, 1),
                "second_answer_ms": round(second, 2), **rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(10)


def sequential(bare: Bare, rpc_conn, edge_url: str, api_url: str, users: list[str]) -> dict[str, list[float]]:
    auths = {u: f"Bearer {token(u)}" for u in users}
    edge, api = Client(edge_url), Client(api_url)

    def rpc(u: str) -> float:
        t0 = time.perf_counter()
        with rpc_conn.transaction():
            rpc_conn.execute("SET LOCAL ROLE authenticated")
            rpc_conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                             (json.dumps({"sub": u, "role": "authenticated"}),))
            rows = rpc_conn.execute("SELECT * FROM recommend_videos(20)").fetchall()
        assert len(rows) == 20
        return (time.perf_counter() - t0) * 1000

    def http(c: Client, u: str, path: str) -> float:
        t0 = time.perf_counter()
        status, body = c.recommend(u, auths[u], path=path)
        ms = (time.perf_counter() - t0) * 1000
        assert status == 200 and len(json.loads(body)["items"]) == 20, body[:300]
        return ms

    for u in users[:100]:  # warm-up
        bare(u, "prepared"), rpc(u), http(edge, u, EDGE_PATH), http(api, u, "/v1/recommendations")
    out: dict[str, list[float]] = {"bare": [], "rpc": [], "edge": [], "api": []}
    for u in users:
        out["bare"].append(bare(u, "prepared"))
        out["rpc"].append(rpc(u))
        out["edge"].append(http(edge, u, EDGE_PATH))
        out["api"].append(http(api, u, "/v1/recommendations"))
    return out


def computed(s, edge_url: str, users: list[str]) -> list[float]:
    """The Edge Function when no fresh stored vector exists (a swipe since the last
    update_user_embedding): features, user_content.onnx and the SQL history sum on every request.
    The users' stored vectors are removed for it and put back after."""
    with db.connection(s) as conn:
        saved = conn.execute("DELETE FROM user_embeddings WHERE model_version = 'bench' AND user_id = ANY(%s) "
                             "RETURNING model_version, user_id, embedding, last_updated", (users,)).fetchall()
        conn.commit()
    try:
        c, out = Client(edge_url), []
        for u in users:
            auth = f"Bearer {token(u)}"
            t0 = time.perf_counter()
            status, body = c.recommend(u, auth, path=EDGE_PATH)
            out.append((time.perf_counter() - t0) * 1000)
            assert status == 200 and json.loads(body)["source"] == "two_tower", body[:300]
        return out
    finally:
        with db.connection(s) as conn:
            with conn.cursor().copy("COPY user_embeddings (model_version, user_id, embedding, last_updated) "
                                    "FROM STDIN") as cp:
                for row in saved:
                    cp.write_row(row)
            conn.commit()


# ------------------------------------------------------------------ artifact load alone

def synthetic_bundle(root: Path, videos: int, mode: str, user_dim: int = 777, dim: int = 64) -> Path:
    """A bundle of the shapes a hybrid model has at `videos` (random weights), as export writes
    it: the files `mode` needs, with their manifest."""
    import hashlib

    import torch

    from twotower.export import OPSET, _write_json
    from twotower.features import ITEM_NUMERIC, USER_NUMERIC, FeaturePipeline, Scaler  # noqa: I001
    from twotower.model import ModelArgs, UserTower

    version = f"synthetic-{mode.replace('+', '-')}-{videos}"
    out = root / version
    if (out / "manifest.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    n_tags, n_perf = 512, user_dim - 9 - 512
    pipe = FeaturePipeline([f"t{i}" for i in range(n_tags)], [f"p{i}" for i in range(n_perf)],
                           Scaler(ITEM_NUMERIC, [0.0] * 3, [1.0] * 3), Scaler(USER_NUMERIC, [0.0] * 8, [1.0] * 8),
                           "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
    args = ModelArgs(kind="hybrid", user_dim=pipe.user_feature_dim, item_dim=pipe.item_feature_dim, n_items=videos,
                     embedding_dim=dim, normalize=False, user_content=True)
    tower = UserTower(args).eval()
    if mode == "onnx":
        torch.onnx.export(tower, (torch.randn(2, args.user_dim), torch.zeros(2, 3, dtype=torch.long)),
                          out / "user_tower.onnx", input_names=["features", "history"], output_names=["embedding"],
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, "history": {0: "batch", 1: "history_len"},
                                        "embedding": {0: "batch"}})
        _write_json(out / "vocab_item.json", [f"v{i}" for i in range(videos)])
    else:
        torch.onnx.export(tower.content, (torch.randn(2, args.user_dim),), out / "user_content.onnx",
                          input_names=["features"], output_names=["embedding"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, "embedding": {0: "batch"}})
    _write_json(out / "feature_schema.json", pipe.schema())
    _write_json(out / "normalizer.json", {"user": {"features": USER_NUMERIC, "mean": [0.0] * 8, "scale": [1.0] * 8}})
    _write_json(out / "vocab_tag.json", pipe.tag_vocab)
    _write_json(out / "vocab_actress.json", pipe.performer_vocab)
    _write_json(out / "model_meta.json", {"version": version, "embedding_dim": dim, "normalized": False,
                                          "user_vector": mode})
    files = {}
    for f in edge_functions.NEEDS[mode]:
        data = (out / f).read_bytes()
        files[f] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _write_json(out / "manifest.json", {"version": version, "files": files})
    return out


def load_alone(bundle: Path, mode: str) -> dict:
    """bench/edge_load.ts in a fresh Deno: read + SHA256 + session + first run, peak RSS."""
    exe, root = edge_functions.deno(edge_functions.functions_dir())
    cmd = ["/usr/bin/time", "-f", "%M", exe, "run", "--no-prompt", "--allow-read", "--allow-env",
           "--node-modules-dir=manual", str(ROOT / "bench" / "edge_load.ts"), str(bundle.parent), bundle.name, mode]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=600,
                       env={**os.environ, "DENO_NO_UPDATE_CHECK": "1"})
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1][:300] if r.stderr.strip() else f"exit {r.returncode}"}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["peak_rss_mb"] = round(int(r.stderr.strip().splitlines()[-1]) / 1024, 1)
    out["bundle_mb"] = round(sum((bundle / f).stat().st_size for f in edge_functions.NEEDS[mode]) / 2**20, 2)
    return out


def cold_table() -> dict:
    root = scratch_home("edge-synthetic")
    out = {}
    for videos in (50_000, 1_000_000):
        for mode in ("sql+onnx", "onnx"):
            b = synthetic_bundle(root, videos, mode)
            out[f"{mode}@{videos}"] = load_alone(b, mode)
            print(f"{mode} at {videos} videos: {out[f'{mode}@{videos}']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--cold-only", action="store_true", help="only the artifact-load table (no world)")
    a = ap.parse_args()
    if a.cold_only:
        res = {"artifact_load": cold_table(), "machine": machine(), "commit": git_commit()}
        print(json.dumps(res, indent=2))
        print(f"wrote {write_json('edge_cold', res)}")
        return
    s, _ = build_world(f"edge-{a.videos}", 10_000, a.videos, 1_000_000, keep=True)
    url = db.database_url(s)
    bundles = s.home / "edge-bundles"
    b = edge_functions.bundle(s.path("artifacts") / "bench", bundles)
    assert b.mode == "sql+onnx", b.mode
    with db.connection(s) as conn:
        all_users = [r[0] for r in conn.execute("SELECT user_id FROM user_embeddings WHERE model_version='bench'")]
    users = random.Random(0).sample(sorted(all_users), a.users)
    cold = cold_first_answer(url, bundles, users[0])
    print(f"cold start: {cold}", flush=True)

    port = free_port()
    env = {**os.environ, "TWOTOWER_HOME": str(s.home), "TWOTOWER_JWT_SECRET": SECRET, "OMP_NUM_THREADS": "1"}
    env.pop("DATABASE_URL", None)
    api = subprocess.Popen([str(ROOT / ".venv" / "bin" / "twotower"), "serve", "--port", str(port), "--no-access-log"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_url = f"http://127.0.0.1:{port}"
    edge, edge_url, _ = start_edge(url, bundles)
    try:
        wait(api_url, api, "/readyz")
        bare = Bare(s, 40)
        rpc_conn = db.connect(s)
        seq = sequential(bare, rpc_conn, edge_url, api_url, users)
        seq["edge_computed"] = computed(s, edge_url, users[:300])
        warm_mem = rss_mb(edge.pid)
        api.terminate()  # saturation: the Edge Function alone on the machine (with its database)
        api.wait(10)
        sat = wrk(edge_url, users, 15, 16, path=EDGE_PATH)
        after = rss_mb(edge.pid)
    finally:
        edge.terminate()
        edge.wait(10)
        if api.poll() is None:
            api.terminate()
    res = {
        "videos": a.videos, "users_measured": len(users), "mode": b.mode, "bundle_mb": round(b.bytes / 2**20, 3),
        **{f"{k}_p50_ms": pct(v, 50) for k, v in seq.items()}, **{f"{k}_p99_ms": pct(v, 99) for k, v in seq.items()},
        "rpc_over_bare_p50": round(pct(seq["rpc"], 50) / pct(seq["bare"], 50), 2),
        "edge_over_bare_p50": round(pct(seq["edge"], 50) / pct(seq["bare"], 50), 2),
        "api_over_bare_p50": round(pct(seq["api"], 50) / pct(seq["bare"], 50), 2),
        "edge_saturation": sat, "edge_cold_start": cold, "edge_memory_warm": warm_mem,
        "edge_memory_after_saturation": after, "machine": machine(), "commit": git_commit(),
    }
    print(json.dumps(res, indent=2))
    print(f"wrote {write_json(f'edge_{a.videos}', res)}")
    db.stop_embedded(s)


if __name__ == "__main__":
    main()
