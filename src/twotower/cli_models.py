"""`twotower models`: the registry (list, register, activate, rollback, traffic) and artifact
folders in S3-compatible storage (push, pull)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twotower import db, registry, storage
from twotower.config import Settings
from twotower.console import make_console
from twotower.errors import InvalidInput

models_app = typer.Typer(no_args_is_help=True,
                         help="Model registry: list, register, activate, rollback, traffic; push/pull artifacts.")
console = make_console()
ENDPOINT = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3 endpoint (default $AWS_ENDPOINT_URL; Supabase: https://<ref>.supabase.co/storage/v1/s3)")]
REGION = Annotated[str | None, typer.Option("--region", help="S3 region (default $AWS_REGION)")]


def settings() -> Settings:
    return Settings()


def store(s: Settings | None = None):
    return db.store(s or settings())


@models_app.command("list")
def models_list() -> None:
    """Registered versions, which are active, their traffic and embeddings."""

    with store() as conn:
        rows = registry.list_versions(conn)
    t = Table("version", "type", "dim", "metric", "default", "active", "traffic", "videos embedded", "ndcg@10 (val)")
    for v in rows:
        t.add_row(v.version, v.model_type, str(v.embedding_dim), v.metric, "yes" if v.is_default else "",
                  "yes" if v.is_active else "", f"{v.traffic_share:.2f}", f"{v.videos_embedded:,}",
                  f"{v.metrics.get('val_ndcg@10', float('nan')):.4f}")
    console.print(t)

@models_app.command("register")
def models_register(folder: Path) -> None:
    """Verify an artifact folder and add it to the registry (inactive)."""

    s = settings()
    with store(s) as conn:
        v = registry.register(conn, folder, s.path("artifacts"))
    console.print(f"registered {v.version} ({v.model_path}); next: twotower embed --version {v.version}")

@models_app.command("activate")
def models_activate(version: str) -> None:
    """Make VERSION the default and only active version."""

    with store() as conn:
        registry.activate(conn, version)
    console.print(f"{version} is now the default version (traffic 1.0)")

@models_app.command("rollback")
def models_rollback() -> None:
    """Go back to the default version before the last activation."""

    with store() as conn:
        v = registry.rollback(conn)
    console.print(f"rolled back: {v.version} is the default again")

@models_app.command("traffic")
def models_traffic(shares: Annotated[list[str], typer.Argument(help="VERSION=SHARE ..., summing to 1")]) -> None:
    """Split traffic between versions for an A/B test."""

    with store() as conn:
        act = registry.set_traffic(conn, registry.parse_shares(shares))
    console.print("traffic: " + ", ".join(f"{v.version}={v.traffic_share:.2f}{' (default)' if v.is_default else ''}"
                                          for v in act))



@models_app.command("push")
def models_push(
    version: str,
    to: Annotated[str, typer.Option("--to", help="s3://BUCKET[/PREFIX]: the version goes to PREFIX/VERSION/")],
    endpoint_url: ENDPOINT = None,
    region: REGION = None,
) -> None:
    """Upload VERSION's artifact folder to S3-compatible storage such as Supabase Storage.

    The folder is verified first and manifest.json goes last, so a partial push is never pulled."""
    folder = settings().path("artifacts") / version
    if not (folder / "manifest.json").exists():
        raise InvalidInput(f"no artifact folder for version {version} under {folder.parent}: "
                           "export it first (`twotower models list`)")
    t = storage.push(folder, to, storage.client(endpoint_url, region))
    what = "already there, identical: nothing uploaded" if t.skipped else \
        f"pushed {t.files} files, {t.bytes / 2**20:.2f} MiB"
    console.print(f"{version} -> {t.remote}/{version}: {what}", soft_wrap=True, highlight=False)


@models_app.command("pull")
def models_pull(
    version: str,
    from_: Annotated[str, typer.Option("--from", help="s3://BUCKET[/PREFIX] that holds PREFIX/VERSION/")],
    to: Annotated[Path | None, typer.Option(
        "--to", help="only download into DIR/VERSION (default: into the registry's folder, and register it)")] = None,
    endpoint_url: ENDPOINT = None,
    region: REGION = None,
) -> None:
    """Download VERSION, verify every file against its manifest, and register it (inactive)."""
    s3 = storage.client(endpoint_url, region)
    if to is not None:
        folder, t = storage.pull(version, from_, to, s3)
        console.print(f"pulled {version} ({t.files} files, {t.bytes / 2**20:.2f} MiB, verified) into {folder}",
                      soft_wrap=True, highlight=False)
        return
    s = settings()
    with store(s) as conn:
        if conn.execute("SELECT 1 FROM embedding_model_versions WHERE version = %s", (version,)).fetchone():
            raise InvalidInput(f"version {version} is already registered here: nothing to pull")
        conn.commit()
        folder, t = storage.pull(version, from_, s.path("artifacts"), s3)
        v = registry.register(conn, folder, s.path("artifacts"))
    console.print(f"pulled {version} ({t.files} files, {t.bytes / 2**20:.2f} MiB, verified) and registered it; "
                  f"next: twotower embed --version {v.version}", soft_wrap=True, highlight=False)


@models_app.command("show")
def models_show(version: str) -> None:
    """One version: its row, offline metrics, training window and feature importance."""
    import json

    s = settings()
    with store(s) as conn:
        v = registry.get(conn, version)
        imp = registry.importance(conn, version)
    meta_path = Path(v.model_path) / "model_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    t = Table("key", "value", show_header=False)
    for k, val in (("version", v.version), ("type", v.model_type), ("dim", v.embedding_dim), ("metric", v.metric),
                   ("default", v.is_default), ("active", v.is_active), ("traffic", f"{v.traffic_share:.2f}"),
                   ("videos embedded", f"{v.videos_embedded:,}"), ("user vector", meta.get("user_vector", "?")),
                   ("training window", " .. ".join(meta.get("training_window") or [])), ("path", v.model_path)):
        t.add_row(k, str(val))
    for k, val in sorted((v.metrics or {}).items()):
        t.add_row(k, f"{val:.4f}" if isinstance(val, float) else str(val))
    console.print(t)
    if not imp:
        console.print("feature importance: none stored (trained before it was computed, or no validation likes)")
        return
    ti = Table("input", "NDCG@10 drop when shuffled", title="feature importance (permutation, validation slice)")
    for name, score in imp:
        ti.add_row(name, f"{score:+.4f}")
    console.print(ti)
