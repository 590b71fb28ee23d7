"""Fault drills against a real `twotower serve` process, as an outside tester runs them:

    python bench/faults.py                 # ~3 minutes; writes bench/results/faults.json (untracked)

1. crash: decisions posted from 4 connections, the database stopped with `pg_ctl -m immediate`
   mid-stream (3 times): how many acknowledged (200) decisions are missing after the restart;
2. outage of 20 s and 45 s under a mixed load (recommendations + decisions): time from the
   database accepting connections again to the first normal (non-fallback) answer, the slowest
   503, and any other 5xx;
3. backends terminated (`pg_terminate_backend`, 10 rounds) with the database up: answers served
   from the fallback (should be none) and non-200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx  # noqa: E402
import psycopg  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402
from _world import build_world  # noqa: E402

from twotower import db  # noqa: E402

SERVICE_KEY = "bench-faults-service-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`twotower serve` in its own process, against the world's server by DATABASE_URL."""

    def __init__(self, settings, url: str) -> None:
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "TWOTOWER_HOME": str(settings.home),
               "TWOTOWER_SERVICE_KEY": SERVICE_KEY, "TWOTOWER_JWT_SECRET": "x" * 32}
        self.proc = subprocess.Popen([sys.executable, "-m", "twotower.cli", "serve", "--port", str(self.port),
                                      "--no-access-log"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the service did not become ready")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


async def load(base: str, make, stop: asyncio.Event, workers: int) -> list[tuple]:
    """(sent, received, status, kind, body) for every answer until `stop`."""
    out: list[tuple] = []
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        async def worker(k: int) -> None:
            i = 0
            while not stop.is_set():
                kind, path, body = make(k, i)
                t0 = time.monotonic()
                try:
                    r = await client.post(path, json=body)
                    out.append((t0, time.monotonic(), r.status_code, kind, body, r.json()))
                except httpx.HTTPError as e:
                    out.append((t0, time.monotonic(), 0, kind, body, {"detail": str(e)}))
                i += 1
        await asyncio.gather(*(worker(k) for k in range(workers)))
    return out


async def with_load(base: str, make, workers: int, drill) -> list[tuple]:
    stop = asyncio.Event()
    task = asyncio.create_task(load(base, make, stop, workers))
    await drill()
    stop.set()
    return await task


def restart(settings) -> float:
    db.database_url(settings)
    return time.monotonic()


async def crash(base: str, settings, url: str, video: str, rounds: int) -> dict:
    acked, lost = 0, 0
    for r in range(rounds):
        def decision(k, i, r=r):
            return "decide", "/v1/decisions", {"user_id": f"crash-{r}-{k}-{i}", "video_id": video,
                                               "decision_type": "like", "refresh_embedding": False}

        async def drill():
            await asyncio.sleep(3.0)
            await asyncio.to_thread(db.stop_embedded, settings, "immediate")
            await asyncio.sleep(0.5)

        rows = await with_load(base, decision, 4, drill)
        restart(settings)
        ok = [b["user_id"] for _, _, s, _, b, _ in rows if s == 200]
        with psycopg.connect(url) as conn:
            saved = {u for (u,) in conn.execute("SELECT user_id FROM user_video_decisions WHERE user_id LIKE %s",
                                                (f"crash-{r}-%",))}
        acked += len(ok)
        lost += sum(1 for u in ok if u not in saved)
        await asyncio.sleep(2.0)  # let the service see the database again
    return {"rounds": rounds, "acknowledged": acked, "lost": lost}


async def outage(base: str, settings, user: str, video: str, seconds: float) -> dict:
    def mixed(k, i):
        if k == 0:
            return "decide", "/v1/decisions", {"user_id": user, "video_id": video, "decision_type": "like",
                                               "refresh_embedding": False}
        return "recommend", "/v1/recommendations", {"user_id": user, "limit": 20}

    marks = {}

    async def drill():
        await asyncio.sleep(1.0)
        await asyncio.to_thread(db.stop_embedded, settings)
        marks["down"] = time.monotonic()
        await asyncio.sleep(seconds)
        marks["up"] = await asyncio.to_thread(restart, settings)
        await asyncio.sleep(5.0)

    rows = await with_load(base, mixed, 4, drill)
    up = marks["up"]
    normal = [t1 for t0, t1, s, kind, _, b in rows
              if kind == "recommend" and t0 >= up and s == 200 and b.get("source") == "two_tower"]
    decided = [t1 for t0, t1, s, kind, _, _ in rows if kind == "decide" and t0 >= up and s == 200]
    s503 = [t1 - t0 for t0, t1, s, *_ in rows if s == 503]
    return {"outage_s": seconds, "requests": len(rows),
            "first_normal_recommendation_s": round(normal[0] - up, 3) if normal else None,
            "first_recorded_decision_s": round(decided[0] - up, 3) if decided else None,
            "fallback_answers_after_restart": sum(1 for t0, _, s, k, _, b in rows
                                                  if t0 >= up and b.get("source") == "fallback"),
            "n_503": len(s503), "slowest_503_s": round(max(s503), 3) if s503 else 0.0,
            "other_5xx": sum(1 for _, _, s, *_ in rows if s >= 500 and s != 503),
            "errors_without_answer": sum(1 for _, _, s, *_ in rows if s == 0)}


async def terminate(base: str, url: str, user: str, rounds: int) -> dict:
    def recommendation(k, i):
        return "recommend", "/v1/recommendations", {"user_id": user, "limit": 20}

    killed = []

    async def drill():
        with psycopg.connect(url, autocommit=True) as admin:
            for _ in range(rounds):
                await asyncio.sleep(0.5)
                killed.append(admin.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'").fetchone()[0])
        await asyncio.sleep(0.5)

    rows = await with_load(base, recommendation, 4, drill)
    return {"rounds": rounds, "backends_terminated": sum(killed), "requests": len(rows),
            "fallback_answers": sum(1 for *_, b in rows if b.get("source") == "fallback"),
            "non_200": sum(1 for _, _, s, *_ in rows if s != 200)}


async def main_async(args) -> dict:
    settings, _ = build_world("faults", args.users, args.videos, args.decisions, keep=args.keep)
    url = db.database_url(settings)
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM user_video_decisions WHERE user_id LIKE 'crash-%%'")
        conn.commit()
        video = conn.execute("SELECT id FROM videos ORDER BY id LIMIT 1").fetchone()[0]
        user = conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 ORDER BY count(*) DESC, 1 "
                            "LIMIT 1").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
    svc = Service(settings, url)
    try:
        out = {"synchronous_commit": sync}
        out["crash"] = await crash(svc.base, settings, url, video, args.crash_rounds)
        out["outages"] = [await outage(svc.base, settings, user, video, s) for s in args.outages]
        out["terminate"] = await terminate(svc.base, url, user, 10)
    finally:
        svc.close()
        db.stop_embedded(settings)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--decisions", type=int, default=100_000)
    p.add_argument("--crash-rounds", type=int, default=3)
    p.add_argument("--outages", type=float, nargs="*", default=[20.0, 45.0])
    p.add_argument("--keep", action="store_true", help="reuse the world of an earlier run")
    args = p.parse_args()
    res = asyncio.run(main_async(args))
    c = res["crash"]
    print(f"synchronous_commit: {res['synchronous_commit']}")
    print(f"crash (immediate stop) x{c['rounds']}: {c['lost']} of {c['acknowledged']} acknowledged decisions lost")
    for o in res["outages"]:
        print(f"outage {o['outage_s']:.0f} s: first normal answer {o['first_normal_recommendation_s']} s and first "
              f"recorded decision {o['first_recorded_decision_s']} s after the restart; "
              f"{o['fallback_answers_after_restart']} fallback answers after it; {o['n_503']} 503s, slowest "
              f"{o['slowest_503_s']} s; other 5xx {o['other_5xx']}")
    t = res["terminate"]
    print(f"backends terminated x{t['rounds']} ({t['backends_terminated']} backends): "
          f"{t['fallback_answers']} fallback answers, {t['non_200']} non-200 of {t['requests']}")
    path = write_json("faults", {"commit": git_commit(), "machine": machine(), **res})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
