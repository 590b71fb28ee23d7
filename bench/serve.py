"""Serving benchmark: the HTTP API against loopback, authenticated requests for random users.

    python bench/serve.py --videos 50000      # 10k users; needs `wrk` (Debian package) for saturation
    python bench/serve.py --videos 1000000    # reuses the world of bench/embed_bench.py --videos 1000000

1+2. sequential requests (p50/p95/p99), interleaved user by user with the bare pgvector query
   (top-20, decided videos filtered) for the same users, from psycopg;
3. a fixed rate (default 200 req/s) from a separate process, latency measured from the scheduled
   send time (no coordinated omission);
4. saturation with wrk (16 connections).

    python bench/serve.py --videos 50000 --statement   # where the statement's time goes (no server)

--statement times, from psycopg and interleaved user by user, the bare query and the service's
own search statement (recommend._statement: the deck filter, the re-rank's settings, the likes
row) with exploration off and at the installation's share, for 400 users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import httpx  # noqa: E402
import jwt  # noqa: E402
import numpy as np  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402
from _world import build_world  # noqa: E402

from twotower import db  # noqa: E402
from twotower.config import load_config  # noqa: E402

SECRET = "bench-secret-bench-secret-bench-secret"
ROOT = Path(__file__).resolve().parents[1]


def pct(xs, p):
    return round(float(np.percentile(xs, p)), 2)


def token(u: str) -> str:
    return jwt.encode({"sub": u, "exp": int(time.time()) + 7200, "aud": "authenticated"}, SECRET, algorithm="HS256")


class Bare:
    """The top-20 pgvector query alone, from psycopg, for one user: the stored user vector as a
    parameter, decided videos filtered. Two forms: `plain` (version and k as parameters, so
    PostgreSQL plans it on every call) and `prepared` (version and k as literals, a prepared
    generic plan: the fastest way to run it, and what the service does)."""

    def __init__(self, settings, ef: int) -> None:
        from psycopg import sql as psql

        from twotower.db import sql

        self.conns = {form: db.connect(settings) for form in ("plain", "prepared")}
        for conn in self.conns.values():
            conn.execute(psql.SQL("SET hnsw.ef_search = {}").format(psql.Literal(ef)))
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self.conns["prepared"].execute("SET plan_cache_mode = force_generic_plan")
        self.vecs = dict(self.conns["plain"].execute(
            "SELECT user_id, embedding FROM user_embeddings WHERE model_version='bench'").fetchall())
        dim = len(next(iter(self.vecs.values())).to_numpy())
        text = sql("hnsw_search")
        self.plain = psql.SQL(text).format(dim=psql.Literal(dim))
        self.prepared = psql.SQL(text.replace("%(version)s", "'bench'").replace("%(k)s", "20")).format(
            dim=psql.Literal(dim))

    def __call__(self, user: str, form: str) -> float:
        q, conn = self.vecs[user].to_numpy(), self.conns[form]
        t0 = time.perf_counter()
        if form == "plain":  # planned on every call, as a client runs it by default
            conn.execute(self.plain, {"q": q, "version": "bench", "user_id": user, "k": 20}).fetchall()
        else:
            conn.execute(self.prepared, {"q": q, "user_id": user}, prepare=True).fetchall()
        return (time.perf_counter() - t0) * 1000


class Client:
    """A minimal keep-alive HTTP/1.1 client on a blocking socket: an HTTP library (httpx) costs
    about 2 ms of client CPU per request on this machine, more than psycopg costs the bare query."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.host = host
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def recommend(self, user: str, auth: str, limit: int = 20, path: str = "/v1/recommendations") -> tuple[int, bytes]:
        body = json.dumps({"user_id": user, "limit": limit}).encode()
        self.sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                           f"Content-Type: application/json\r\nAuthorization: {auth}\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, self.file.read(length)


def sequential(url: str, bare: Bare, users: list[str]) -> dict[str, list[float]]:
    """One request at a time, the bare query and the API interleaved user by user, so that both
    see the same moment of this shared machine. Each user's token was seen once before (warm-up):
    an app sends the same token on every swipe until it expires."""
    auths = {u: f"Bearer {token(u)}" for u in users}
    c = Client(url)
    for u in users:  # warm-up: every user once (token verified, caches and buffers warm)
        c.recommend(u, auths[u])
        bare(u, "plain"), bare(u, "prepared")
    out: dict[str, list[float]] = {"plain": [], "prepared": [], "api": []}
    for u in users:
        out["plain"].append(bare(u, "plain"))
        out["prepared"].append(bare(u, "prepared"))
        t0 = time.perf_counter()
        status, body = c.recommend(u, auths[u])
        out["api"].append((time.perf_counter() - t0) * 1000)
        assert status == 200 and len(json.loads(body)["items"]) == 20, body[:300]
    return out


def statement_breakdown(bare: Bare, users: list[str]) -> dict[str, float]:
    """p50 (ms) of the bare query and of the service's statement without and with exploration,
    interleaved per user, as the service runs it (prepared, generic plan, stored vector)."""
    from twotower.serve.recommend import _statement

    conn = bare.conns["prepared"]
    conn.execute("SELECT twotower.refresh_explore(interval '0 seconds')")  # as the service keeps it
    dim = len(next(iter(bare.vecs.values())).to_numpy())
    stmt = _statement("bench", dim, 20, True, True, False)

    def deck(u: str, explore: float | None) -> float:
        t0 = time.perf_counter()
        conn.execute(stmt, {"user_id": u, "imp": True, "deck": None, "div": None, "explore": explore,
                            "pending": []}, prepare=True, binary=True).fetchall()
        return (time.perf_counter() - t0) * 1000

    runs: dict[str, list[float]] = {"bare": [], "deck_explore_off": [], "deck_default": []}
    for rnd in range(2):  # the first round warms plans and buffers
        for u in users:
            times = (bare(u, "prepared"), deck(u, 0.0), deck(u, None))
            if rnd:
                for k, t in zip(runs, times, strict=True):
                    runs[k].append(t)
    out = {f"{k}_p50_ms": pct(v, 50) for k, v in runs.items()}
    out |= {f"{k}_over_bare_p50": round(float(np.median(runs[k]) / np.median(runs["bare"])), 2)
            for k in ("deck_explore_off", "deck_default")}
    return out


def fixed_rate(url: str, users: list[str], rate: float, seconds: float, q: mp.Queue, conns: int = 32) -> None:
    """Open-loop load from raw asyncio streams (keep-alive HTTP/1.1; an HTTP client library would
    cost more CPU than the server on these 2 cores). Request i is due at start + i/rate; its
    latency counts from that moment, queueing included (no coordinated omission)."""
    host, port = url.split("//")[1].split(":")
    tokens = {u: token(u) for u in users}

    async def run():
        lat, errors = [], 0
        n = int(rate * seconds)
        todo: asyncio.Queue = asyncio.Queue()
        start = time.perf_counter() + 0.5
        rng = np.random.default_rng(1)
        picks = [users[k] for k in rng.integers(len(users), size=n)]

        async def worker():
            nonlocal errors
            reader, writer = await asyncio.open_connection(host, int(port))
            while (i := await todo.get()) is not None:
                u = picks[i]
                body = json.dumps({"user_id": u, "limit": 20}).encode()
                writer.write((f"POST /v1/recommendations HTTP/1.1\r\nHost: {host}\r\n"
                              f"Content-Type: application/json\r\nAuthorization: Bearer {tokens[u]}\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                await writer.drain()
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                errors += status != 200
                lat.append((time.perf_counter() - (start + i / rate)) * 1000)
            writer.close()

        tasks = [asyncio.create_task(worker()) for _ in range(conns)]
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            todo.put_nowait(i)
        for _ in tasks:
            todo.put_nowait(None)
        await asyncio.gather(*tasks)
        q.put({"latencies": lat, "errors": errors, "achieved_rps": n / (time.perf_counter() - start)})

    asyncio.run(run())


def wrk(url: str, users: list[str], seconds: int, connections: int, path: str = "/v1/recommendations") -> dict:
    if not shutil.which("wrk"):
        return {"skipped": "wrk not installed (apt-get install wrk)"}
    lua = Path(tempfile.mkdtemp()) / "rec.lua"
    bodies = [json.dumps({"user_id": u, "limit": 20}) for u in users]
    auths = [f"Bearer {token(u)}" for u in users]
    lua.write_text(
        "local bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n"
        "local auths = {" + ",".join(json.dumps(a) for a in auths) + "}\n"
        "math.randomseed(7)\n"
        "request = function()\n  local i = math.random(#bodies)\n"
        f"  return wrk.format('POST', '{path}', {{['Content-Type']='application/json',"
        " ['Authorization']=auths[i]}, bodies[i])\nend\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout

    def ms(label):
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return None
        v = float(m.group(1))
        return round(v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v, 2)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": float(rps.group(1)) if rps else None, "p50_ms": ms("50%"), "p90_ms": ms("90%"),
            "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(0) if errs else "", "connections": connections}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sequential-only", action="store_true",
                    help="only the interleaved sequential/bare comparison (a quick check while tuning); writes nothing")
    ap.add_argument("--statement", action="store_true",
                    help="only the service's search statement against the bare query, from psycopg (no server)")
    a = ap.parse_args()
    users_n, decisions = (10_000, 1_000_000) if a.videos <= 100_000 else (100_000, 10_000_000)
    s, _ = build_world(f"embed-{a.videos}", users_n, a.videos, decisions, keep=True)
    cfg = load_config()
    with db.connection(s) as conn:
        all_users = [r[0] for r in conn.execute("SELECT user_id FROM user_embeddings WHERE model_version='bench'")]
        # Every run starts from the same deck state: the cards an earlier run served (impressions
        # within the TTL) would otherwise grow each user's deck filter from run to run.
        conn.execute("TRUNCATE twotower.impressions, twotower.recommendation_log")
    rng = np.random.default_rng(0)
    users = [all_users[i] for i in rng.choice(len(all_users), size=1000, replace=False)]
    bare = Bare(s, cfg.embedding.ef_search)
    if a.statement:
        res = statement_breakdown(bare, users[:400]) | {"videos": a.videos, "machine": machine(),
                                                           "commit": git_commit()}
        print(json.dumps(res, indent=2))
        write_json(f"serve_statement_{a.videos}", res)
        return

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = {**os.environ, "TWOTOWER_HOME": str(s.home), "TWOTOWER_JWT_SECRET": SECRET,
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DATABASE_URL", None)
    srv = subprocess.Popen([str(ROOT / ".venv" / "bin" / "twotower"), "serve", "--port", str(port),
                            "--workers", str(a.workers), "--no-access-log"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        seq = sequential(url, bare, users)
        if a.sequential_only:
            api, prep, plain = (float(np.percentile(seq[k], 50)) for k in ("api", "prepared", "plain"))
            print(f"API p50 {api:.2f} ms, bare p50 {prep:.2f} ms (plain {plain:.2f}): ratio {api / prep:.2f}")
            return
        q: mp.Queue = mp.Queue()
        p = mp.Process(target=fixed_rate, args=(url, users, a.rate, a.seconds, q))
        p.start()
        fr = q.get(timeout=a.seconds + 120)
        p.join()
        sat = wrk(url, users, 15, 16)
    finally:
        srv.terminate()
        srv.wait(10)
    res = {
        "videos": a.videos, "users": users_n, "workers": a.workers,
        "bare_query_p50_ms": pct(seq["prepared"], 50), "bare_query_p99_ms": pct(seq["prepared"], 99),
        "bare_query_plain_p50_ms": pct(seq["plain"], 50), "bare_query_plain_p99_ms": pct(seq["plain"], 99),
        "sequential_p50_ms": pct(seq["api"], 50), "sequential_p95_ms": pct(seq["api"], 95),
        "sequential_p99_ms": pct(seq["api"], 99),
        "api_over_bare_p50": round(float(np.percentile(seq["api"], 50) / np.percentile(seq["prepared"], 50)), 2),
        "api_over_plain_bare_p50": round(float(np.percentile(seq["api"], 50) / np.percentile(seq["plain"], 50)), 2),
        f"rate{int(a.rate)}_p50_ms": pct(fr["latencies"], 50), f"rate{int(a.rate)}_p95_ms": pct(fr["latencies"], 95),
        f"rate{int(a.rate)}_p99_ms": pct(fr["latencies"], 99), f"rate{int(a.rate)}_errors": fr["errors"],
        f"rate{int(a.rate)}_achieved_rps": round(fr["achieved_rps"], 1),
        "saturation": sat, "machine": machine(), "commit": git_commit(),
    }
    print(json.dumps(res, indent=2))
    write_json(f"serve_{a.videos}", res)


if __name__ == "__main__":
    main()
