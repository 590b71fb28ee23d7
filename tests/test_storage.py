"""`models push` / `models pull` against a real S3-compatible server on loopback: moto's
server (`moto[server]` from PyPI, installed by `make`), path-style as Supabase Storage wants."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import S3_KEYS as KEYS
from tests.helpers import exported, free_port, load_world, trained_checkpoint
from tests.test_cli import twotower
from twotower import registry, storage
from twotower.errors import ArtifactError, InvalidInput, NotFound, StoreUnavailable
from twotower.export import export, load_artifacts, verify_manifest


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    client = storage.client(s3_endpoint)
    bucket = f"models-{request.node.name.replace('_', '-')[:40].lower()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_push_then_pull_gives_back_the_verified_folder_and_registers_it(conn, settings, tmp_path, s3):
    client, bucket = s3
    load_world(conn)
    folder = exported(conn, settings, tmp_path, "v1")
    t = storage.push(folder, f"s3://{bucket}/app/models", client)
    assert not t.skipped and t.files == len(verify_manifest(folder)["files"]) + 1
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "app/models/v1/manifest.json" in keys and "app/models/v1/user_tower.onnx" in keys
    assert storage.push(folder, f"s3://{bucket}/app/models", client).skipped  # same version: a no-op

    dest = tmp_path / "elsewhere"
    got, _ = storage.pull("v1", f"s3://{bucket}/app/models", dest, client)
    assert got == dest / "v1" and not list(dest.glob(".*"))
    for name in verify_manifest(got)["files"]:
        assert (got / name).read_bytes() == (folder / name).read_bytes()
    assert load_artifacts(got).meta["version"] == "v1"
    v = registry.register(conn, got, tmp_path / "registry")
    assert v.version == "v1"


def test_a_tampered_or_incomplete_remote_copy_is_refused_and_nothing_is_left(conn, settings, tmp_path, s3):
    client, bucket = s3
    load_world(conn)
    folder = exported(conn, settings, tmp_path, "v2")
    storage.push(folder, f"s3://{bucket}", client)
    client.put_object(Bucket=bucket, Key="v2/normalizer.json", Body=b"{}")
    dest = tmp_path / "pulled"
    with pytest.raises(ArtifactError, match="SHA256"):
        storage.pull("v2", f"s3://{bucket}", dest, client)
    assert not (dest / "v2").exists() and not list(dest.glob(".*"))
    client.delete_object(Bucket=bucket, Key="v2/normalizer.json")
    with pytest.raises(ArtifactError, match="lacks normalizer.json"):
        storage.pull("v2", f"s3://{bucket}", dest, client)
    assert not list(dest.iterdir())


def test_a_different_model_under_a_pushed_version_is_refused(conn, settings, tmp_path, s3):
    client, bucket = s3
    load_world(conn)
    a = exported(conn, settings, tmp_path / "a", "v3")
    storage.push(a, f"s3://{bucket}", client)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "normalizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match="SHA256"):  # a folder that does not verify is never uploaded
        storage.push(b, f"s3://{bucket}", client)
    again = export(trained_checkpoint(conn, tmp_path / "c"), tmp_path / "again", settings.path("artifacts"), "v3")
    with pytest.raises(InvalidInput, match="immutable"):  # same name, another export: refused
        storage.push(again, f"s3://{bucket}", client)
    got, _ = storage.pull("v3", f"s3://{bucket}", tmp_path / "pulled", client)
    assert (got / "model_meta.json").read_bytes() == (a / "model_meta.json").read_bytes()


def test_clear_errors_for_a_missing_bucket_version_or_endpoint(tmp_path, s3, s3_endpoint):
    client, bucket = s3
    with pytest.raises(NotFound, match="no version v9"):
        storage.pull("v9", f"s3://{bucket}", tmp_path, client)
    with pytest.raises(NotFound, match="does not exist"):
        storage.pull("v9", "s3://no-such-bucket", tmp_path, client)
    with pytest.raises(InvalidInput, match="s3://BUCKET"):
        storage.Remote.parse("https://example.com/bucket")
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        storage.pull("v9", f"s3://{bucket}", tmp_path, storage.client(f"http://127.0.0.1:{free_port()}"))


def test_the_cli_pushes_and_pulls_into_the_registry(conn, settings, tmp_path, s3, s3_endpoint):
    client, bucket = s3
    load_world(conn)
    exported(conn, settings, tmp_path, "v5")
    env = {"DATABASE_URL": settings.database_url, "TWOTOWER_HOME": str(settings.home),
           "AWS_ENDPOINT_URL": s3_endpoint, **KEYS}
    p = twotower("models", "push", "v5", "--to", f"s3://{bucket}/models", env=env)
    assert p.returncode == 0 and "pushed" in p.stdout, p.stderr
    shutil.rmtree(settings.path("artifacts") / "v5")  # the serving machine has nothing local
    p = twotower("models", "pull", "v5", "--from", f"s3://{bucket}/models", env=env)
    assert p.returncode == 0 and "registered" in p.stdout, p.stderr
    assert registry.get(conn, "v5").model_path == str((settings.path("artifacts") / "v5").resolve())
    p = twotower("models", "pull", "v5", "--from", f"s3://{bucket}/models", env=env)
    assert p.returncode == 1 and p.stderr.startswith("error:") and "already registered" in p.stderr
    p = twotower("models", "pull", "nope", "--from", f"s3://{bucket}/models", env=env)
    assert p.returncode == 1 and "no version nope" in p.stderr and "Traceback" not in p.stderr
    p = twotower("models", "push", "v5", "--to", "s3://missing-bucket", env=env)
    assert p.returncode == 1 and "does not exist" in p.stderr and "Traceback" not in p.stderr
