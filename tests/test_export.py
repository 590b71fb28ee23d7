import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.helpers import exported, load_world
from twotower.errors import ArtifactError, InvalidInput
from twotower.export import FILES, load_artifacts
from twotower.model import ModelArgs, TwoTower
from twotower.train import load_checkpoint


@pytest.mark.parametrize("kind", ["hybrid", "mlp", "hybrid-ensemble"])
def test_onnx_matches_pytorch(conn, settings, tmp_path, kind):
    load_world(conn)
    ensemble = kind.endswith("-ensemble")  # cold-start vectors: the average of 3 content MLPs
    kind = kind.removesuffix("-ensemble")
    folder = exported(conn, settings, tmp_path, "v-" + kind, kind,
                      extra=["model.content_ensemble=3"] if ensemble else None)
    meta = json.loads((folder / "model_meta.json").read_text())
    st = load_checkpoint(tmp_path / f"ckpt-{kind}" / "best.pt")
    model = TwoTower(ModelArgs(**st["model_args"]))
    model.load_state_dict(st["model_state"])
    model.eval()
    art = load_artifacts(folder)
    assert meta["model_args"]["content_ensemble"] == (3 if ensemble else 1)
    rng = np.random.default_rng(0)
    for b in (1, 7, 64):  # dynamic batch
        uf = rng.normal(size=(b, meta["user_feature_dim"])).astype(np.float32)
        hist = rng.integers(-1, max(meta["vocab_sizes"]["item"], 1), size=(b, 5))
        itf = rng.normal(size=(b, meta["item_feature_dim"])).astype(np.float32)
        idx = rng.integers(-1, max(meta["vocab_sizes"]["item"], 1), size=b)
        with torch.no_grad():
            tu = model.user(torch.from_numpy(uf), torch.from_numpy(hist)).numpy()
            ti = model.item(torch.from_numpy(itf), torch.from_numpy(idx)).numpy()
        np.testing.assert_allclose(art.embed_users(uf, hist), tu, atol=1e-5)
        np.testing.assert_allclose(art.embed_items(itf, idx), ti, atol=1e-5)
    assert meta["metric"] == ("ip" if kind == "hybrid" else "cosine")
    manifest = json.loads((folder / "manifest.json").read_text())
    # The hybrid's user tower is its history sum plus the content MLP: exported alone as well,
    # so a consumer can leave the history table in the database ("sql+onnx").
    parts = {"user_content.onnx"} if kind == "hybrid" else set()
    assert set(manifest["files"]) == set(FILES) | parts
    assert meta["user_vector"] == ("sql+onnx" if kind == "hybrid" else "onnx")
    if kind == "hybrid":
        content = ort.InferenceSession(str(folder / "user_content.onnx"))
        uf = rng.normal(size=(3, meta["user_feature_dim"])).astype(np.float32)
        hist = np.full((3, 1), -1)
        np.testing.assert_allclose(content.run(None, {"features": uf})[0], art.embed_users(uf, hist), atol=1e-5)
    size_mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    assert size_mb < 50
    ort.InferenceSession(str(folder / "user_tower.onnx"))  # plain onnxruntime loads it


def test_manifest_refuses_altered_or_missing_files(conn, settings, tmp_path):
    load_world(conn)
    folder = exported(conn, settings, tmp_path)
    meta = folder / "normalizer.json"
    meta.write_text(meta.read_text().replace("0", "1", 1))
    with pytest.raises(ArtifactError, match="normalizer.json does not match its SHA256"):
        load_artifacts(folder)
    folder2 = exported(conn, settings, tmp_path, "v2")
    (folder2 / "item_tower.onnx").unlink()
    with pytest.raises(ArtifactError, match="item_tower.onnx is missing"):
        load_artifacts(folder2)
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        load_artifacts(tmp_path / "nowhere")


def test_export_refuses_to_overwrite_and_leaves_no_partial_folder(conn, settings, tmp_path):
    load_world(conn)
    exported(conn, settings, tmp_path, "same")
    with pytest.raises(InvalidInput, match="already exists"):
        exported(conn, settings, tmp_path, "same")
    leftovers = [p for p in settings.path("artifacts").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def _rehash(folder, name):
    """Rewrite a manifest entry so that a changed file passes the hash check (a deliberate forger)."""
    from twotower.export import _sha256

    mf = folder / "manifest.json"
    m = json.loads(mf.read_text())
    m["files"][name] = {"sha256": _sha256(folder / name), "bytes": (folder / name).stat().st_size}
    mf.write_text(json.dumps(m))


def test_manifest_paths_must_stay_inside_the_folder(conn, settings, tmp_path):
    load_world(conn)
    folder = exported(conn, settings, tmp_path)
    mf = folder / "manifest.json"
    good = mf.read_text()
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    for name in ("../../../../etc/hostname", "/etc/hostname", "../secret.txt", "sub/../../secret.txt", ".."):
        m = json.loads(good)
        m["files"][name] = {"sha256": "0" * 64, "bytes": 1}
        mf.write_text(json.dumps(m))
        with pytest.raises(ArtifactError, match="not a file of this folder"):
            load_artifacts(folder)
    # a listed file that is a link to somewhere else
    mf.write_text(good)
    (folder / "vocab_tag.json").rename(tmp_path / "vocab_tag.json")
    (folder / "vocab_tag.json").symlink_to(tmp_path / "vocab_tag.json")
    with pytest.raises(ArtifactError, match="not a file of this folder|not a plain file"):
        load_artifacts(folder)


def test_unlisted_files_are_ignored_and_not_copied(conn, settings, tmp_path):
    from twotower import registry

    load_world(conn)
    folder = exported(conn, settings, tmp_path / "elsewhere", "v-extra")
    other = tmp_path / "outside" / "v-extra"
    other.parent.mkdir()
    folder.rename(other)
    (other / "payload.onnx").write_bytes(b"anything")
    load_artifacts(other)  # loads: the extra file is never read
    v = registry.register(conn, other, settings.path("artifacts"))
    copied = {p.name for p in (settings.path("artifacts") / "v-extra").iterdir()}
    assert "payload.onnx" not in copied and copied == {"manifest.json", "user_content.onnx", *FILES}
    assert v.version == "v-extra"


def test_malformed_json_is_one_line(conn, settings, tmp_path):
    load_world(conn)
    folder = exported(conn, settings, tmp_path)
    good = (folder / "manifest.json").read_text()
    for broken in ("{not json", "[]", '{"files": 3}', '{"files": {"model_meta.json": 5}}'):
        (folder / "manifest.json").write_text(broken)
        with pytest.raises(ArtifactError) as e:
            load_artifacts(folder)
        assert "\n" not in str(e.value) and "manifest.json" in str(e.value)
    for name, text in (("model_meta.json", "{oops"), ("model_meta.json", '{"version": "v1"}'),
                       ("vocab_item.json", "[1, 2")):
        (folder / "manifest.json").write_text(good)
        original = (folder / name).read_text()
        (folder / name).write_text(text)
        _rehash(folder, name)
        with pytest.raises(ArtifactError) as e:
            load_artifacts(folder)
        assert "\n" not in str(e.value) and name in str(e.value)
        (folder / name).write_text(original)
