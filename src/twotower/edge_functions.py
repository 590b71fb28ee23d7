"""The Supabase Edge Functions (supabase/functions/, TypeScript for Deno): `twotower edge bundle`
copies what a model version's functions need next to them, `twotower edge serve` runs both
functions locally under Deno at /functions/v1/<name>, as Supabase serves them.

What a version needs depends on how its user vector is built (model_meta.json "user_vector"):
"sql" needs no model file (the database sums the history rows), "sql+onnx" the small
user_content.onnx (the history sum stays in SQL, so the 1M-video history table never has to fit
in an Edge Function), "onnx" the whole user tower and the item vocabulary. Every file keeps its
SHA256 in manifest.json, which the functions check before use."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from twotower.errors import InvalidInput
from twotower.export import read_meta, verify_manifest

COMMON = ("model_meta.json", "feature_schema.json", "normalizer.json", "vocab_tag.json", "vocab_actress.json")
NEEDS = {  # as supabase/functions/_shared/artifact.ts NEEDS
    "sql": ("model_meta.json",),
    "sql+onnx": (*COMMON, "user_content.onnx"),
    "onnx": (*COMMON, "user_tower.onnx", "vocab_item.json"),
}
FUNCTIONS = ("two_tower_recommendations", "update_user_embedding")
REPO_FUNCTIONS = Path(__file__).resolve().parents[2] / "supabase" / "functions"


@dataclass(frozen=True)
class Bundle:
    folder: Path
    mode: str
    files: tuple[str, ...]
    bytes: int


def functions_dir() -> Path:
    """supabase/functions holding twotower's functions: $TWOTOWER_FUNCTIONS_DIR, the current
    project's, or the ones shipped in this checkout."""
    for d in (os.environ.get("TWOTOWER_FUNCTIONS_DIR"), Path.cwd() / "supabase" / "functions", REPO_FUNCTIONS):
        if d and (Path(d) / "_shared" / "handlers.ts").is_file():
            return Path(d).resolve()
    raise InvalidInput("twotower's Edge Functions are not here: copy supabase/functions from the twotower "
                       "repository into your project, or set TWOTOWER_FUNCTIONS_DIR")


def bundle(artifact: Path, dest_root: Path) -> Bundle:
    """Copy the files a version's functions read (and its manifest) to dest_root/<version>,
    verified before and after; replaces an older bundle of the same version."""
    manifest = verify_manifest(artifact)
    meta = read_meta(artifact)
    mode = meta.get("user_vector", "onnx")
    if mode not in NEEDS:
        raise InvalidInput(f"{artifact}: unknown user_vector {mode!r} in model_meta.json; re-export the model")
    files = NEEDS[mode]
    missing = [f for f in files if f not in manifest["files"]]
    if missing:
        raise InvalidInput(f"{artifact} lacks {', '.join(missing)}: re-export it with this twotower")
    out = dest_root / meta["version"]
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ("manifest.json", *files):
        shutil.copy2(artifact / f, tmp / f)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return Bundle(out, mode, files, sum((out / f).stat().st_size for f in ("manifest.json", *files)))


def deno(functions: Path) -> tuple[str, Path | None]:
    """The Deno binary and, when the project installed the functions' packages with npm
    (`make install`), its root: Deno then reads them from node_modules, with no network."""
    root = next((p for p in (functions, *functions.parents) if (p / "node_modules" / "onnxruntime-web").is_dir()),
                None)
    for exe in (os.environ.get("TWOTOWER_DENO"), root and root / "node_modules" / ".bin" / "deno",
                shutil.which("deno")):
        if exe and Path(exe).exists():
            return str(exe), root
    raise InvalidInput("Deno is not installed: run `make install` (npm ci installs it) or install deno, "
                       "or set TWOTOWER_DENO")


def serve_command(port: int, database_url: str, functions: Path | None = None) -> tuple[list[str], Path]:
    """The command line that serves both functions on 127.0.0.1:port, and where to run it.
    Deno's permissions: network, environment, reading (the bundles), and writing only to the
    database's Unix socket when the URL names one (`?host=/dir`, as the embedded server's)."""
    functions = functions or functions_dir()
    exe, root = deno(functions)
    cmd = [exe, "run", "--no-prompt", "--allow-net", "--allow-env", "--allow-read", "--allow-sys"]
    socket_dir = parse_qs(urlsplit(database_url).query).get("host", [""])[0]
    if socket_dir.startswith("/"):
        cmd.append(f"--allow-write={socket_dir}")
    if root is not None:
        cmd.append("--node-modules-dir=manual")
    cmd += [str(functions / "_shared" / "serve_local.ts"), str(port)]
    return cmd, root or functions


def serve_env(database_url: str, artifacts: Path) -> dict[str, str]:
    """The functions' environment: the database and the artifacts (Supabase sets
    SUPABASE_DB_URL itself; locally the registry's folder is the artifact store). Auth settings
    (TWOTOWER_JWT_SECRET, TWOTOWER_JWKS_URL, ...) pass through as they are."""
    env = {**os.environ, "DATABASE_URL": database_url, "DENO_NO_UPDATE_CHECK": "1"}
    env.setdefault("TWOTOWER_ARTIFACTS", str(artifacts))
    env.pop("SUPABASE_DB_URL", None)
    return env


def serve(port: int, database_url: str, artifacts: Path) -> None:
    """Become Deno serving the functions (exec: signals reach Deno, nothing is left behind)."""
    cmd, cwd = serve_command(port, database_url)
    os.chdir(cwd)
    os.execve(cmd[0], cmd, serve_env(database_url, artifacts))
