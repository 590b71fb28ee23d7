"""The `twotower` command: parses flags, calls one stage entry, prints. Errors from the library
become one line on stderr and exit status 1 here, and nowhere else."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twotower import db
from twotower.config import Settings, load_config
from twotower.errors import LockHeld, TwotowerError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Two-Tower recommendations from PostgreSQL + pgvector.")
db_app = typer.Typer(no_args_is_help=True, help="Embedded/remote database: init, status, reset.")
import_app = typer.Typer(no_args_is_help=True, help="Import data (MovieLens, CSV/Parquet tables).")
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
console = Console()
err = Console(stderr=True)


def settings() -> Settings:
    return Settings()


# --------------------------------------------------------------------------- db

@db_app.command("init")
def db_init() -> None:
    """Start the embedded server if needed and apply pending migrations (idempotent)."""
    s = settings()
    with db.connection(s) as conn:
        applied = db.migrate(conn)
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
def db_reset(yes: Annotated[bool, typer.Option("--yes", help="Really drop every table.")] = False) -> None:
    """Drop all twotower tables (and the app tables it created), then re-create the schema."""
    if not yes:
        raise typer.BadParameter("this deletes all data; pass --yes to confirm")
    s = settings()
    with db.connection(s) as conn:
        db.reset(conn)
        db.migrate(conn)
    console.print("database reset: empty schema re-created")


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
    with db.connection(s) as conn:
        db.ensure_schema(conn)
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
    with db.connection(s) as conn:
        db.ensure_schema(conn)
        counts = importers.ingest(conn, frames)
    console.print(f"imported in {time.perf_counter() - t0:.1f}s; the database now holds "
                  + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command()
def summary(top: int = 10) -> None:
    """Users, videos, decisions, like ratio and the most liked tags."""
    s = settings()
    with db.connection(s) as conn:
        db.ensure_schema(conn)
        cur = conn.execute(db.sql("summary"))
        row = dict(zip([c.name for c in cur.description], cur.fetchone(), strict=True))
        tags = conn.execute(db.sql("top_tags"), {"n": top}).fetchall()
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
    console.print(f"trained {r.epochs_run} epoch(s) in {r.seconds:.1f}s; validation: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in r.metrics.items()))
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
    from twotower.evaluate.report import markdown_table

    console.print(f"split {split}: {json.dumps(meta['split_info'])}")
    print(markdown_table(results))
    console.print(f"report: {out}/report.md")


def main() -> None:
    """Entry point: library errors become one line and exit 1, never a traceback."""
    try:
        app(standalone_mode=False)
    except LockHeld as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(3)
    except TwotowerError as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(1)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (typer.BadParameter, typer.Exit) as e:  # click handles its own in standalone mode
        raise e
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
