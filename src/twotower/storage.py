"""Artifact folders in S3-compatible object storage (Supabase Storage speaks S3): `push` a
verified folder, `pull` one back and verify it before anything uses it.

Layout: `<prefix>/<version>/<file>` for every file the manifest lists, `manifest.json` written
last, so a half-finished push never looks complete (pull reads the manifest first and refuses a
version without one). A version is immutable: pushing it again is a no-op when the remote
manifest is the same and refused when it differs. The endpoint and keys come from the standard
AWS settings boto3 reads (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_REGION`) or from the arguments; addressing is path-style, which Supabase Storage requires."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twotower.errors import ArtifactError, InvalidInput, NotFound, StoreUnavailable
from twotower.export import listed_files, read_meta, verify_manifest


@dataclass(frozen=True)
class Remote:
    """`s3://bucket/prefix`: where versions live, one folder per version below the prefix."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Remote:
        if not url.startswith("s3://"):
            raise InvalidInput(f"{url!r}: give an s3://BUCKET[/PREFIX] URL (Supabase Storage: the bucket name, "
                               "with AWS_ENDPOINT_URL=https://<ref>.supabase.co/storage/v1/s3)")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise InvalidInput(f"{url!r} names no bucket: s3://BUCKET[/PREFIX]")
        return cls(bucket, prefix.strip("/"))

    def key(self, version: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, version, name) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class Transfer:
    version: str
    remote: str
    files: int
    bytes: int
    skipped: bool = False  # push: the same version was already there


def client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client (path-style addressing; retries as boto3's standard mode)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise InvalidInput("object storage needs boto3: pip install 'twotower[storage]'") from None
    cfg = Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3},
                 connect_timeout=10, read_timeout=60)
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region or None, config=cfg)


@contextmanager
def _errors(what: str, remote: Remote) -> Iterator[None]:
    """Turns botocore's exceptions into one line that says what to check."""
    import botocore.exceptions as bx

    try:
        yield
    except bx.NoCredentialsError:
        raise StoreUnavailable(f"{what}: no storage credentials; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY (Supabase: Storage > S3 access keys)") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as e:
        raise StoreUnavailable(f"{what}: cannot reach the storage endpoint ({e}); check AWS_ENDPOINT_URL") from None
    except bx.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise NotFound(f"{what}: bucket {remote.bucket!r} does not exist; create it first") from None
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            raise StoreUnavailable(f"{what}: storage refused the request ({code}); check the access keys "
                                   f"and that they may use {remote.bucket!r}") from None
        raise StoreUnavailable(f"{what}: storage answered {code or e}") from None
    except bx.BotoCoreError as e:
        raise StoreUnavailable(f"{what}: {e}") from None


def _remote_manifest(s3: Any, remote: Remote, version: str) -> dict[str, Any] | None:
    import botocore.exceptions as bx

    try:
        body = s3.get_object(Bucket=remote.bucket, Key=remote.key(version, "manifest.json"))["Body"].read()
    except bx.ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        m = json.loads(body)
    except ValueError:
        raise ArtifactError(f"{remote}/{version}/manifest.json is not JSON: the remote copy is corrupt") from None
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        raise ArtifactError(f"{remote}/{version}/manifest.json has no 'files' table: the remote copy is corrupt")
    return m


def push(folder: Path, url: str, s3: Any | None = None) -> Transfer:
    """Upload a verified artifact folder as `<prefix>/<version>/`, manifest last."""
    folder = Path(folder)
    manifest = verify_manifest(folder)  # never upload what we would refuse to load
    version = read_meta(folder)["version"]
    remote = Remote.parse(url)
    s3 = s3 or client()
    names = listed_files(manifest)
    size = sum((folder / n).stat().st_size for n in names)
    with _errors(f"push {version} to {remote}", remote):
        there = _remote_manifest(s3, remote, version)
        if there is not None:
            if there.get("files") == manifest["files"]:
                return Transfer(version, str(remote), len(names), size, skipped=True)
            raise InvalidInput(f"{remote}/{version} already holds a different model: versions are immutable, "
                               "export under a new version")
        for name in [n for n in names if n != "manifest.json"] + ["manifest.json"]:
            s3.upload_file(str(folder / name), remote.bucket, remote.key(version, name))
    return Transfer(version, str(remote), len(names), size)


def pull(version: str, url: str, dest_root: Path, s3: Any | None = None) -> tuple[Path, Transfer]:
    """Download `<prefix>/<version>/` into dest_root/<version>, verified against its manifest
    before it appears there (a tampered or partial copy is removed, never left half-written)."""
    remote = Remote.parse(url)
    s3 = s3 or client()
    import botocore.exceptions as bx

    dest_root = Path(dest_root)
    target = dest_root / version
    if (target / "manifest.json").exists():
        raise InvalidInput(f"{target} exists: remove it, or use it as it is")
    tmp = dest_root / f".{version}.pull"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with _errors(f"pull {version} from {remote}", remote):
            manifest = _remote_manifest(s3, remote, version)
            if manifest is None:
                raise NotFound(f"{remote} has no version {version} (no {remote.key(version, 'manifest.json')}); "
                               "push it first with `twotower models push`")
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            for name in manifest["files"]:
                if "/" in name or "\\" in name or name in ("", ".", "..", "manifest.json"):
                    raise ArtifactError(f"{remote}/{version}/manifest.json lists {name!r}: refusing it")
                try:
                    s3.download_file(remote.bucket, remote.key(version, name), str(tmp / name))
                except bx.ClientError as e:
                    if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                        raise
                    raise ArtifactError(f"{remote}/{version} lacks {name}, which its manifest lists: "
                                        "the remote copy is incomplete; push it again") from None
        verify_manifest(tmp)
        meta = read_meta(tmp)
        if meta["version"] != version:
            raise ArtifactError(f"{remote}/{version} holds version {meta['version']!r}: refusing a mislabelled copy")
        size = sum(p.stat().st_size for p in tmp.iterdir())
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, Transfer(version, str(remote), len(manifest["files"]) + 1, size)
