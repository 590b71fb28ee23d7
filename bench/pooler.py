"""The service behind connection poolers: `twotower serve` (1 worker) against the same served world,
directly and through pgbouncer (Debian package; `make test-deps` installs it), under concurrent load.

    python bench/pooler.py            # ~2 minutes; writes bench/results/pooler.json (untracked)

- direct: the embedded server's Unix socket;
- pgbouncer, session mode (with `database.pooler: session`, since pgbouncer forwards no startup
  options);
- pgbouncer, transaction mode: the service must refuse to start, in one line.
Load: 8 concurrent clients for 15 s over loopback, 3 of 4 requests recommendations (limit 20) for
the 200 most active users, 1 of 4 a new user's first decision (so the recommended users' stored
vectors stay fresh). Reported: requests/s, p50/p99 latency, non-2xx answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from _common import git_commit, machine, write_json  # noqa: E402
from _world import build_world  # noqa: E402
from faults import SERVICE_KEY, Service, free_port  # noqa: E402

from twotower import db  # noqa: E402

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def start_pgbouncer(url: str, mode: str) -> tuple[subprocess.Popen, str, Path]:
    u = urlparse(url)
    sockdir, dbname = parse_qs(u.query)["host"][0], u.path.lstrip("/")
    d = Path(tempfile.mkdtemp(prefix=f"pgb-bench-{mode}-"))
    d.chmod(0o755)
    port = free_port()
    (d / "users.txt").write_text('"postgres" ""\n')
    (d / "pgbouncer.ini").write_text(
        f"[databases]\n{dbname} = host={sockdir} port=5432 dbname={dbname}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\n"
        f"auth_file = {d}/users.txt\npool_mode = {mode}\nignore_startup_parameters = extra_float_digits,options\n"
        f"max_client_conn = 200\ndefault_pool_size = 20\nlogfile = {d}/pgbouncer.log\n")
    for p in (d, *d.iterdir()):
        shutil.chown(p, "pgserver")
    proc = subprocess.Popen(["runuser", "-u", "pgserver", "--", PGBOUNCER, str(d / "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"postgresql://postgres@127.0.0.1:{port}/{dbname}", d


async def drive(base: str, users: list[str], video: str, seconds: float, clients: int, tag: str) -> dict:
    lat: list[float] = []
    bad = 0
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        async def worker(k: int) -> None:
            nonlocal bad
            i = 0
            while time.monotonic() < stop:
                if (i + k) % 4 == 0:  # new users' first swipes: the recommended users' vectors stay fresh
                    path, body = "/v1/decisions", {"user_id": f"pooler-{tag}-{k}-{i}", "video_id": video,
                                                   "decision_type": "like", "refresh_embedding": False}
                else:
                    path, body = "/v1/recommendations", {"user_id": users[(k * 7919 + i) % len(users)], "limit": 20}
                t0 = time.perf_counter()
                r = await c.post(path, json=body)
                lat.append((time.perf_counter() - t0) * 1000)
                bad += r.status_code >= 300
                i += 1
        t0 = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        took = time.monotonic() - t0
    return {"requests": len(lat), "requests_per_s": round(len(lat) / took, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "non_2xx": bad}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args()
    settings, _ = build_world("faults", 2000, 5000, 100_000, keep=True)
    url = db.database_url(settings)
    with psycopg.connect(url) as conn:
        video = conn.execute("SELECT id FROM videos ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM user_video_decisions WHERE user_id LIKE 'pooler-%%'")
        conn.execute("DELETE FROM profiles WHERE user_id LIKE 'pooler-%%'")
        conn.commit()
        users = [r[0] for r in conn.execute("SELECT user_id FROM user_video_decisions GROUP BY 1 "
                                            "ORDER BY count(*) DESC, 1 LIMIT 200")]
    out: dict = {}
    runs = [("direct", None), ("pgbouncer_session", "session")]
    for name, mode in runs:
        bouncer = start_pgbouncer(url, mode) if mode else None
        target = bouncer[1] if bouncer else url
        if mode == "session":
            os.environ["TWOTOWER__DATABASE__POOLER"] = "session"
        svc = Service(settings, target)
        try:
            out[name] = asyncio.run(drive(svc.base, users, video, args.seconds, args.clients, name))
        finally:
            svc.close()
            os.environ.pop("TWOTOWER__DATABASE__POOLER", None)
            if bouncer:
                bouncer[0].terminate()
                bouncer[0].wait(10)
                shutil.rmtree(bouncer[2], ignore_errors=True)
        print(f"{name}: {out[name]}")
    proc, target, d = start_pgbouncer(url, "transaction")
    try:
        env = {**os.environ, "DATABASE_URL": target, "TWOTOWER_HOME": str(settings.home),
               "TWOTOWER_SERVICE_KEY": SERVICE_KEY}
        r = subprocess.run([sys.executable, "-m", "twotower.cli", "serve", "--port", str(free_port())],
                           env=env, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        out["pgbouncer_transaction"] = {"exit_code": r.returncode, "error": lines[0] if lines else r.stderr[-300:]}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    print(f"pgbouncer_transaction: {out['pgbouncer_transaction']}")
    db.stop_embedded(settings)
    print(f"wrote {write_json('pooler', {'commit': git_commit(), 'machine': machine(), **out})}")


if __name__ == "__main__":
    main()
