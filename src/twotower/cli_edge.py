"""`twotower edge`: the Supabase Edge Functions' bundle and local server (edge_functions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twotower import db, edge_functions
from twotower.config import Settings
from twotower.console import make_console
from twotower.errors import InvalidInput

edge_app = typer.Typer(no_args_is_help=True,
                       help="Supabase Edge Functions: bundle a model version beside them, serve them locally.")
console = make_console()


@edge_app.command("bundle")
def edge_bundle(
    version: Annotated[str, typer.Option("--version", help="a registered (or exported) model version")],
    to: Annotated[Path | None, typer.Option(
        "--to", help="where bundles go (default: supabase/functions/_shared/models of this project)")] = None,
) -> None:
    """Copy what the functions need of VERSION (by its user_vector: none, user_content.onnx or
    user_tower.onnx, with the feature files and manifest.json) next to them, for
    `supabase functions deploy`."""
    s = Settings()
    artifact = s.path("artifacts") / version
    if not (artifact / "manifest.json").exists():
        raise InvalidInput(f"no artifact folder for version {version} under {s.path('artifacts')}: "
                           "export and register it first (`twotower models list`)")
    dest = to or (edge_functions.functions_dir() / "_shared" / "models")
    b = edge_functions.bundle(artifact, dest)
    console.print(f"bundled {version} ({b.mode}): {', '.join(b.files)}, {b.bytes / 2**20:.2f} MiB in {b.folder}",
                  soft_wrap=True, highlight=False)
    console.print("deploy it with the functions' static files, in supabase/config.toml:\n"
                  + "".join(f'  [functions.{f}]\n  static_files = ["./functions/_shared/models/**"]\n'
                            for f in edge_functions.FUNCTIONS)
                  + "then: supabase functions deploy two_tower_recommendations update_user_embedding",
                  highlight=False, markup=False)


@edge_app.command("serve")
def edge_serve(
    port: Annotated[int, typer.Option("--port", help="local port (127.0.0.1)")] = 54321,
) -> None:
    """Run both functions under Deno at http://127.0.0.1:PORT/functions/v1/<name>, against the
    configured database, reading models from the registry's folder (or $TWOTOWER_ARTIFACTS)."""
    s = Settings()
    if not 0 < port < 65536:
        raise typer.BadParameter("must be 1-65535", param_hint="--port")
    url = s.database_url or db.database_url(s)
    edge_functions.serve(port, url, s.path("artifacts"))
