"""The `twotower` command: parses flags, calls one stage entry, prints. Errors from the library
become one line on stderr and exit status 1 here, and nowhere else."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from twotower import db
from twotower.cli_ab import ab_app
from twotower.cli_edge import edge_app
from twotower.cli_models import models_app
from twotower.cli_users import users_app
from twotower.config import Settings, load_config
from twotower.console import make_console
from twotower.errors import LockHeld, NotFound, TwotowerError

try:  # typer vendors click from 0.2x on; its usage errors are typer.TyperException
    from typer._click import exceptions as _usage
except ImportError:  # pragma: no cover (older typer on plain click)
    from click import exceptions as _usage

def _plain_help() -> None:
    """Typer 0.2x's rich help prints `<bool>` after every flag (`--help <bool>`) and `{name}` for
    required arguments in the usage line; show flags bare and arguments as click does (NAME,
    [NAME]). Only where typer has these hooks; any other version keeps its own rendering."""
    from typer import core

    opt, arg = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if opt is not None and hasattr(opt, "display_type_rich"):
        shown = opt.display_type_rich
        opt.display_type_rich = lambda self, ctx: None if self.is_flag and self.metavar is None else shown(self, ctx)
    if arg is not None and hasattr(arg, "_usage_display_name"):
        def usage(self) -> str:
            name = (self.metavar or self.name or "").upper()
            return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")
        arg._usage_display_name = usage


_plain_help()
app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Two-Tower recommendations from PostgreSQL + pgvector.")
db_app = typer.Typer(no_args_is_help=True, help="Embedded/remote database: init, status, reset.")
import_app = typer.Typer(no_args_is_help=True, help="Import data (MovieLens, CSV/Parquet tables).")
supabase_app = typer.Typer(no_args_is_help=True, help="Supabase: migration files for the Supabase CLI.")
app.add_typer(db_app, name="db")
app.add_typer(supabase_app, name="supabase")
app.add_typer(import_app, name="import")
app.add_typer(edge_app, name="edge")
app.add_typer(ab_app, name="ab")
app.add_typer(users_app, name="users")
app.add_typer(models_app, name="models")
console = make_console()
err = make_console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"twotower {version('twotower')}")
        raise typer.Exit()


@app.callback()
def _global(config: Annotated[Path | None, typer.Option(
        "--config", help="YAML config file for every command (also $TWOTOWER_CONFIG): the `source` mapping, "
                         "model and service settings")] = None,
            _v: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                             help="print the version and exit")] = False) -> None:
    """Two-Tower recommendations from PostgreSQL + pgvector."""
    import os

    if config is not None:
        if not config.exists():
            raise typer.BadParameter(f"{config} does not exist", param_hint="--config")
        os.environ["TWOTOWER_CONFIG"] = str(config)


def settings() -> Settings:
    return Settings()


def store(s: Settings | None = None):
    return db.store(s or settings())


# --------------------------------------------------------------------------- db

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file (the `source` mapping, ...)")]


def _init(conn, s: Settings, config: Path | None, demo_tables: bool | None) -> list[str]:
    """Install or upgrade the schema. The seed-shaped demo tables are created only where twotower
    runs its own database (no DATABASE_URL), unless asked otherwise; so are Supabase's roles."""
    embedded = not s.database_url
    cfg = load_config(config)
    return db.migrate(conn, cfg.source, demo_tables=embedded if demo_tables is None else demo_tables,
                      roles=embedded, ab_salt=s.ab_salt, serving=cfg.serving)


@db_app.command("init")
def db_init(
    config: ConfigOpt = None,
    demo_tables: Annotated[bool | None, typer.Option(
        "--demo-tables/--no-demo-tables",
        help="create the seed-shaped source tables (default: only for the embedded database)")] = None,
) -> None:
    """Start the embedded server if needed; install or upgrade twotower's schema (idempotent)."""
    s = settings()
    with db.connection(s) as conn:
        applied = _init(conn, s, config, demo_tables)
    console.print(f"schema ready ({'applied ' + ', '.join(applied) if applied else 'up to date'})")


@db_app.command("status")
def db_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Server, pgvector version, migrations and row counts."""
    s = settings()
    with db.connection(s) as conn:
        st = db.status(conn, s)
    if as_json:
        console.print_json(json.dumps(st.__dict__, default=str))
        return
    console.print(f"server: PostgreSQL {st.server} ({'embedded, ' + str(s.home / 'pgdata') if st.embedded else st.url})")
    console.print(f"pgvector: {st.pgvector or 'not installed'}")
    console.print(f"migrations: {', '.join(st.migrations) or 'none'}"
                  + (f"; pending: {', '.join(st.pending)}" if st.pending else ""))
    t = Table("table", "rows")
    for k, v in st.counts.items():
        t.add_row(k, f"{v:,}")
    console.print(t)
    for w in st.warnings:
        err.print(f"[yellow]warning:[/] {w}")


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="Really drop what twotower created.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Drop what twotower created (its schema; the demo tables only if it created them), then
    install the empty schema again. The app's own tables are never touched."""
    if not yes:
        raise typer.BadParameter("this deletes twotower's data; pass --yes to confirm")
    s = settings()
    with db.connection(s) as conn:
        dropped = db.reset(conn)
        _init(conn, s, config, None)
    console.print(f"dropped: {', '.join(dropped) or 'nothing (no twotower schema)'}; empty schema re-created")


@db_app.command("uninstall")
def db_uninstall(yes: Annotated[bool, typer.Option("--yes", help="Really remove twotower from this database.")] = False
                 ) -> None:
    """Remove everything twotower created (its schema; the demo tables and auth helpers only if it
    created them) and nothing else."""
    if not yes:
        raise typer.BadParameter("this removes twotower and its data from the database; pass --yes to confirm")
    with db.connection(settings()) as conn:
        dropped = db.reset(conn)
    console.print(f"removed: {', '.join(dropped) or 'nothing (twotower is not installed here)'}")


@supabase_app.command("migrations")
def supabase_migrations(
    out: Annotated[Path, typer.Option("--out", help="folder of the Supabase project's migrations")] = Path(
        "supabase/migrations"),
    config: ConfigOpt = None,
) -> None:
    """Write twotower's schema as Supabase migration files (same SQL as `db init`), for
    `supabase db push`. Reads the app's column types from DATABASE_URL."""
    from twotower.supabase import write_migrations

    with db.connection(settings()) as conn:
        paths = write_migrations(conn, load_config(config).source, out)
    for p in paths:
        console.print(str(p))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server (no-op with DATABASE_URL)."""
    console.print("embedded server stopped" if db.stop_embedded(settings()) else "no embedded server")


@db_app.command("url")
def db_url() -> None:
    """Print the connection URL (starts the embedded server if needed)."""
    print(db.database_url(settings()))


# --------------------------------------------------------------------------- data in

@app.command()
def synth(
    users: Annotated[int, typer.Option(min=2)] = 2000,
    videos: Annotated[int, typer.Option(min=10)] = 5000,
    decisions: Annotated[int, typer.Option(min=1)] = 100_000,
    seed: int = 0,
    replace: Annotated[bool, typer.Option(help="Replace data already in the database.")] = False,
) -> None:
    """Generate a realistic synthetic data set and load it with COPY."""
    from twotower.data import synth as synth_mod

    spec = synth_mod.SynthSpec(users=users, videos=videos, decisions=decisions, seed=seed)
    t0 = time.perf_counter()
    with console.status("generating"):
        data = synth_mod.generate(spec)
    t1 = time.perf_counter()
    s = settings()
    with store(s) as conn:
        with console.status("loading with COPY"):
            counts = synth_mod.load(conn, data, replace=replace)
    t2 = time.perf_counter()
    console.print(f"generated in {t1 - t0:.1f}s, loaded in {t2 - t1:.1f}s: "
                  + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@import_app.command("movielens")
def import_movielens(path: Path) -> None:
    """Import a MovieLens folder (ml-latest-small, ML-1M or ML-100K layout)."""
    from twotower.data import importers

    frames = importers.read_movielens(path)
    _ingest(frames)


@import_app.command("table")
def import_table(
    videos: Annotated[Path, typer.Option(help="videos CSV/Parquet: id, title, genre, maker, price, ...")],
    decisions: Annotated[Path, typer.Option(help="decisions: user_id, video_id, decision_type, created_at")],
    tags: Annotated[Path | None, typer.Option(help="tags: video_id, tag_name")] = None,
    performers: Annotated[Path | None, typer.Option(help="performers: video_id, performer_name")] = None,
    profiles: Annotated[Path | None, typer.Option(help="profiles: user_id, display_name, created_at, ...")] = None,
) -> None:
    """Import your own tables (CSV or Parquet); see the README for the columns."""
    from twotower.data import importers

    frames = importers.read_tables(videos, decisions, tags, performers, profiles)
    _ingest(frames)


def _ingest(frames) -> None:
    from twotower.data import importers

    s = settings()
    t0 = time.perf_counter()
    with store(s) as conn:
        counts = importers.ingest(conn, frames)
    console.print(f"imported in {time.perf_counter() - t0:.1f}s; the database now holds "
                  + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command()
def summary(top: int = 10) -> None:
    """Users, videos, decisions, like ratio and the most liked tags."""
    s = settings()
    with store(s) as conn:
        cur = conn.execute(db.sql("summary"))
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
        tags = conn.execute(db.sql("top_tags"), {"n": top}).fetchall()
    if not (row["users"] or row["videos"] or row["decisions"]):
        console.print("the database is empty: import data (`twotower import movielens DIR`, `twotower import "
                      "table ...`) or generate some (`twotower synth`)")
        return
    ratio = row["like_ratio"]
    console.print(f"users {row['users']:,} ({row['cold_users']:,} without decisions), "
                  f"videos {row['videos']:,} ({row['cold_videos']:,} never decided), "
                  f"decisions {row['decisions']:,}, like ratio "
                  f"{'n/a' if ratio is None else f'{ratio:.1%}'}")
    console.print(f"decisions from {row['first_decision']} to {row['last_decision']}")
    if tags:
        console.print("top liked tags: " + ", ".join(f"{t} ({n:,})" for t, n in tags))


# --------------------------------------------------------------------------- train

@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="YAML config file (e.g. config/best.yaml)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: section.key=value")] = [],  # noqa: B006
    split: Annotated[str, typer.Option(help="temporal-user (evaluate it afterwards) or none (all data)")] = "temporal-user",
    name: Annotated[str | None, typer.Option(help="checkpoint folder name")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the folder's last.pt")] = False,
) -> None:
    """Train a two-tower model; the best checkpoint goes to $TWOTOWER_HOME/checkpoints/<name>/."""
    from twotower.train import run_training

    cfg = load_config(config, set_)
    r = run_training(settings(), cfg, split, name, resume)
    what = f"trained {r.epochs_run} epoch(s)" if r.epochs_run else "fitted in closed form (no epochs)"
    console.print(f"{what} in {r.seconds:.1f}s; validation: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items()))
    if r.importance:
        read = [(k, v) for k, v in r.importance.items() if v != 0]
        console.print("feature importance (NDCG@10 drop when shuffled): "
                      + (", ".join(f"{k} {v:+.4f}" for k, v in read[:6]) or "none")
                      + f"; {len(r.importance) - len(read)} input(s) unread", soft_wrap=True)
    console.print(f"checkpoint: {r.checkpoint}")


# --------------------------------------------------------------------------- evaluate

@app.command()
def evaluate(
    model: Annotated[list[str], typer.Option("--model", "-m", help="popularity, ease, ials, random, or a checkpoint path; repeatable or comma-separated")] = ["popularity", "ease"],  # noqa: B006
    split: Annotated[str, typer.Option(help="temporal-user | temporal-global | random | new-items")] = "temporal-user",
    test_fraction: Annotated[float | None, typer.Option(help="default: evaluation.test_fraction")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: section.key=value")] = [],  # noqa: B006
    run: Annotated[str | None, typer.Option(help="report folder name (default: a timestamp)")] = None,
) -> None:
    """Evaluate models on a leak-free split; print a table and write a report."""
    from twotower.evaluate.run import run_evaluation

    cfg = load_config(config, set_)
    names = [n.strip() for m in model for n in m.split(",") if n.strip()]
    with console.status("evaluating"):
        out, results, meta = run_evaluation(settings(), cfg, names, split, test_fraction, run)
    from twotower.evaluate.report import comparison_table, comparisons, markdown_table

    console.print(f"split {split}: {json.dumps(meta['split_info'])}")
    print(markdown_table(results))
    if vs := comparison_table(comparisons(results)):
        print("\n" + vs)
    console.print(f"report: {out}/report.md")


@app.command("evaluate-online")
def evaluate_online(days: Annotated[int, typer.Option(help="served lists of the last N days")] = 30) -> None:
    """Online CTR and like rate per served model version (recommendation_log x decisions)."""
    from datetime import UTC, datetime, timedelta

    from twotower.evaluate.online import online_metrics

    with store() as conn:
        rows = online_metrics(conn, datetime.now(UTC) - timedelta(days=days))
    if not rows:
        console.print("no served lists in that window (the service logs them in recommendation_log)")
        return
    t = Table("version", "lists", "videos shown", "answered", "liked", "CTR (answered/shown)",
              "like rate (liked/answered)", "liked/shown")
    for r in rows:
        t.add_row(r.version, f"{r.lists:,}", f"{r.shown:,}", f"{r.answered:,}", f"{r.liked:,}",
                  f"{r.ctr:.2%}", f"{r.like_rate:.2%}", f"{r.likes_per_shown:.2%}")
    console.print(t)


# --------------------------------------------------------------------------- export / registry / embed



@app.command()
def export(
    checkpoint: Path,
    out: Annotated[Path | None, typer.Option(help="folder (default $TWOTOWER_HOME/artifacts/<version>)")] = None,
    version: Annotated[str | None, typer.Option(help="version name (default: kind-timestamp-config)")] = None,
    force: bool = False,
) -> None:
    """Export a checkpoint to ONNX + JSON artifacts with a SHA256 manifest."""
    from twotower.export import export as do_export

    s = settings()
    folder = do_export(checkpoint, out, s.path("artifacts"), version, force)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    console.print(f"exported {folder.name} to {folder} ({size:.1f} MB)")


@app.command()
def embed(
    version: Annotated[str | None, typer.Option(help="registered version (default: the default one)")] = None,
    videos: Annotated[bool, typer.Option("--videos/--no-videos")] = True,
    users: Annotated[bool, typer.Option("--users/--no-users")] = True,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: section.key=value")] = [],  # noqa: B006
) -> None:
    """Embed every video (and user) with a version; write pgvector + HNSW index + Parquet."""
    from twotower import embed as emb
    from twotower import registry
    from twotower.export import load_artifacts

    cfg = load_config(config, set_)
    with store() as conn:
        v = registry.get(conn, version) if version else _default_version(conn)
        art = load_artifacts(Path(v.model_path), threads=2)
        started = conn.execute("SELECT now()").fetchone()[0]
        conn.commit()
        n_videos = n_users = 0
        if videos:
            with console.status(f"embedding videos with {v.version}"):
                r = emb.embed_videos(conn, art, cfg.embedding)
            n_videos = r.rows
            console.print(f"videos: {r.rows:,} embedded in {r.seconds_embed:.1f}s, loaded in "
                          f"{r.seconds_load:.1f}s, HNSW index built in {r.seconds_index:.1f}s")
        if users:
            with console.status(f"embedding users with {v.version}"):
                r = emb.embed_all_users(conn, art)
            n_users = r.rows
            console.print(f"users: {r.rows:,} embedded in {r.seconds_embed:.1f}s, loaded in {r.seconds_load:.1f}s")
        if videos and users:
            with conn.transaction():
                conn.execute(db.sql("record_full_embed"), {"version": v.version, "started": started,
                                                           "videos": n_videos, "users": n_users})


@app.command("batch-update")
def batch_update(
    version: Annotated[str | None, typer.Option(help="version to refresh (default: the default one)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: section.key=value")] = [],  # noqa: B006
) -> None:
    """Re-embed videos and users that are new or changed since the last successful run."""
    from twotower.batch import run_batch_update

    cfg = load_config(config, set_)
    r = run_batch_update(settings(), cfg.batch, version)
    console.print(f"run {r.run_id} ({r.version}): {r.videos:,} videos and {r.users:,} users re-embedded "
                  f"in {r.seconds:.1f}s; log {r.log_file}")


@app.command("batch-runs")
def batch_runs(n: int = 10) -> None:
    """The last batch-update runs."""
    from twotower.batch import last_runs

    with store() as conn:
        rows = last_runs(conn, n)
    t = Table("run", "version", "started", "finished", "status", "videos", "users", "error")
    for r in rows:
        t.add_row(*[("" if x is None else str(x)) for x in r])
    console.print(t)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    access_log: Annotated[bool, typer.Option(help="JSON access log lines on stdout")] = True,
) -> None:
    """Run the HTTP API (uvicorn). Auth settings come from the environment (see README)."""
    import logging

    import uvicorn

    s = settings()
    if not s.auth_enabled:
        err.print("[bold red]WARNING: authentication is DISABLED (TWOTOWER_AUTH_ENABLED=false): "
                  "anyone can read and write any user's data. Local use only.[/]")
    from twotower.serve.auth import Authenticator

    try:
        Authenticator(s)
    except ValueError as e:
        raise TwotowerError(str(e)) from e
    _preflight(s)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("twotower.access").setLevel(logging.INFO if access_log else logging.WARNING)
    # No proxy-headers middleware: the service never uses the client's address.
    uvicorn.run("twotower.serve.asgi:app", host=host, port=port, workers=workers, access_log=False,
                log_level="warning", proxy_headers=False)


def _preflight(s: Settings) -> None:
    """What would stop the service, said in one line before uvicorn starts: the database, the
    schema, and active versions whose artifacts do not verify (served without them if another
    one does; refused if none does)."""
    from twotower import registry
    from twotower.errors import ArtifactError
    from twotower.export import verify_manifest

    with store(s) as conn:
        active = [v for v in registry.list_versions(conn) if v.is_active and v.traffic_share > 0]
    bad = {}
    for v in active:
        try:
            verify_manifest(Path(v.model_path))
        except ArtifactError as e:
            bad[v.version] = str(e)
    if active and len(bad) == len(active):
        raise ArtifactError("no active model version can be served: "
                            + "; ".join(f"{v}: {m}" for v, m in bad.items())
                            + ". Re-export it, or `twotower models rollback`")
    for v, m in bad.items():
        err.print(f"[yellow]warning:[/] model {v} is not served (see /readyz): {m}", soft_wrap=True)


@app.command()
def retrain(
    config: Annotated[Path | None, typer.Option(help="YAML config file (e.g. config/best.yaml)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="override: section.key=value")] = [],  # noqa: B006
    tolerance: Annotated[float, typer.Option(help="accept a candidate this much below the active NDCG@10")] = 0.0,
) -> None:
    """Train, evaluate against the active model, and export/register/embed/activate if not worse."""
    from twotower.retrain import retrain as do_retrain

    r = do_retrain(settings(), load_config(config, set_), tolerance)
    console.print(r.reason)


@app.command()
def recommend(
    users: Annotated[list[str], typer.Argument(help="user ids")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    version: Annotated[str | None, typer.Option(help="model version (default: the default one)")] = None,
    sql: Annotated[bool, typer.Option("--sql", help="ask public.recommend_videos, as supabase.rpc does "
                                                    "(A/B arm, fills, cold start, logged)")] = False,
) -> None:
    """Top-N for users straight from pgvector (stored user vector, decided videos excluded)."""
    from twotower import embed as emb
    from twotower import registry
    from twotower.export import load_artifacts

    if sql:
        if version:
            raise typer.BadParameter("--sql answers with the user's A/B arm; drop --version", param_hint="--version")
        with store() as conn:
            for u in users:
                rows = conn.execute("SELECT r.video_id, r.score, r.model_version, r.source, r.reasons, v.title "
                                    "FROM public.recommend_videos(%s, %s) r LEFT JOIN src_videos v ON v.id = r.video_id",
                                    (limit, u)).fetchall()
                conn.commit()
                src = f"{rows[0][3]}, {rows[0][2] or 'no model'}" if rows else "nothing to recommend"
                t = Table("#", "video", "title", "score", "reasons", title=f"{u} via recommend_videos ({src})")
                for k, (vid, score, _, _, why, title) in enumerate(rows, 1):
                    t.add_row(str(k), vid, title or "", f"{score:.4f}", ", ".join(why or []))
                console.print(t)
        return
    with store() as conn:
        v = registry.get(conn, version) if version else _default_version(conn)
        art = load_artifacts(Path(v.model_path))
        vecs, js = emb.user_vectors_online(conn, art, users)
        unknown = [u for u, j in zip(users, js, strict=True) if j is None]
        for u, q, j in zip(users, vecs, js, strict=True):
            if j is None:
                continue
            if not j.get("decided_count"):
                console.print(f"[bold]{u}[/]: no decisions yet (the service answers with popular videos)")
                continue
            rows = emb.search(conn, v.version, art.dim, q, limit, user_id=u)
            titles = dict(conn.execute("SELECT id, title FROM src_videos WHERE id = ANY(%s)", ([r[0] for r in rows],)).fetchall())
            t = Table("#", "video", "title", "score", title=f"{u} ({v.version}, {j['like_count']} likes)")
            for k, (vid, score) in enumerate(rows, 1):
                t.add_row(str(k), vid, titles.get(vid) or "", f"{score:.4f}")
            console.print(t)
    if unknown:
        raise NotFound(f"unknown user{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: no profile and no "
                       "decisions (a user the app has not created yet gets popular videos from the service)")


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="the user id (sub claim)")],
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 3600,
    service: Annotated[bool, typer.Option(help="a service_role token instead of a user token")] = False,
) -> None:
    """Mint a development JWT signed with TWOTOWER_JWT_SECRET (HS256), for curl and the demo."""
    import time as _time

    import jwt

    s = settings()
    if not s.jwt_secret:
        raise TwotowerError("TWOTOWER_JWT_SECRET is not set: set it to the secret the service verifies with")
    # As Supabase issues them: user tokens carry aud "authenticated" (and the issuer when set).
    claims = {"sub": user, "exp": int(_time.time()) + ttl, "role": "service_role" if service else "authenticated"}
    if not service and s.jwt_audience:
        claims["aud"] = s.jwt_audience
    if s.jwt_issuer:
        claims["iss"] = s.jwt_issuer
    print(jwt.encode(claims, s.jwt_secret, algorithm="HS256"))


@app.command("sample-users")
def sample_users(n: int = 2, cold: bool = False) -> None:
    """Print user ids: the most active ones, or (--cold) ones without decisions."""
    with store() as conn:
        q = ("SELECT p.user_id FROM src_profiles p WHERE NOT EXISTS (SELECT 1 FROM src_decisions d "
             "WHERE d.user_id = p.user_id) ORDER BY 1 LIMIT %s") if cold else \
            "SELECT user_id FROM src_decisions GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT %s"
        print(" ".join(r[0] for r in conn.execute(q, (n,)).fetchall()))


def _default_version(conn):
    from twotower import registry
    from twotower.errors import NotFound

    for v in registry.list_versions(conn):
        if v.is_default:
            return v
    raise NotFound("no default model version: pass --version, or `twotower models activate VERSION`")


def main() -> None:
    """Entry point: library errors become one line and exit 1, usage errors one line and exit 2
    (click's code), never a traceback."""
    try:
        rc = app(standalone_mode=False)  # click hands back typer.Exit's code instead of raising it
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except _usage.NoArgsIsHelpError:  # `twotower`, `twotower db`: typer printed the help; click's code
        sys.exit(2)
    except typer.TyperException as e:  # usage errors: bad value, missing argument, unknown option
        hint = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
        err.print(f"[red]error:[/] {e.format_message()}{hint}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except LockHeld as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(3)
    except TwotowerError as e:
        err.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(1)
    except psycopg.OperationalError as e:
        err.print(f"[red]error:[/] the database is unreachable: {str(e).strip().splitlines()[0]}; "
                  "check DATABASE_URL / `twotower db status`", soft_wrap=True)
        sys.exit(1)
    except psycopg.Error as e:
        err.print(f"[red]error:[/] database error: {str(e).strip().splitlines()[0]} "
                  "(is the schema up to date? run `twotower db init`)", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
