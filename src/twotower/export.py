"""Export a checkpoint as a language-neutral artifact folder (seed 003 §6, DESIGN §5):

    user_tower.onnx, item_tower.onnx      dynamic batch (and history length)
    feature_schema.json, normalizer.json   how to rebuild the input vectors
    vocab_tag.json, vocab_actress.json     bag-of-words vocabularies
    vocab_item.json                        item-ID vocabulary (hybrid models; empty otherwise)
    user_content.onnx                      the user tower's content MLP alone ("sql+onnx" versions)
    model_meta.json                        version, dims, metric, inputs, config, window, metrics
    manifest.json                          SHA256 and size of every file

Written to a temporary folder and renamed into place. `load_artifacts` verifies the manifest
before anything is loaded and refuses a missing or altered file; serving loads only these files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twotower.errors import ArtifactError, InvalidInput
from twotower.features import FeaturePipeline
from twotower.model import ModelArgs, TwoTower

FILES = ("user_tower.onnx", "item_tower.onnx", "feature_schema.json", "normalizer.json",
         "vocab_tag.json", "vocab_actress.json", "vocab_item.json", "model_meta.json")
OPSET = 17


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def default_version(state: dict) -> str:
    return f"{state['model_args']['kind']}-{datetime.now(UTC):%Y%m%d%H%M%S}-{state['config_digest'][:6]}"


def export(checkpoint: Path, out_dir: Path | None, artifacts_root: Path, version: str | None = None,
           force: bool = False) -> Path:
    """Export `checkpoint`; returns the artifact folder."""
    from twotower.train import load_checkpoint, model_from_state

    state = load_checkpoint(Path(checkpoint))
    version = version or default_version(state)
    if not version.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(version) > 64:
        raise InvalidInput(f"version {version!r}: use letters, digits, '-', '_' and '.' (<= 64)")
    out = Path(out_dir) if out_dir else artifacts_root / version
    if out.exists() and not force:
        raise InvalidInput(f"{out} already exists: choose another --version or pass --force")
    args = ModelArgs(**state["model_args"])
    model = model_from_state(state)
    pipe = FeaturePipeline.from_dict(state["pipeline"])
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        inputs = _export_onnx(model, args, tmp)
        mode = sql_user_vector(args)
        extra = _export_user_content(model, args, tmp) if mode == "sql+onnx" else ()
        _write_json(tmp / "feature_schema.json", {**pipe.schema(), "inputs": inputs})
        _write_json(tmp / "normalizer.json", {
            "user": {"features": pipe.user_scaler.names, "mean": pipe.user_scaler.mean,
                     "scale": pipe.user_scaler.scale},
            "item": {"features": pipe.item_scaler.names, "mean": pipe.item_scaler.mean,
                     "scale": pipe.item_scaler.scale}})
        _write_json(tmp / "vocab_tag.json", pipe.tag_vocab)
        _write_json(tmp / "vocab_actress.json", pipe.performer_vocab)
        _write_json(tmp / "vocab_item.json", state["item_vocab"] if args.kind == "hybrid" else [])
        _write_json(tmp / "model_meta.json", {
            "version": version, "model_type": args.kind, "embedding_dim": args.embedding_dim,
            "metric": "cosine" if args.normalize else "ip", "normalized": args.normalize,
            "user_feature_dim": pipe.user_feature_dim, "item_feature_dim": pipe.item_feature_dim,
            "vocab_sizes": {"tag": pipe.n_tags, "actress": pipe.n_performers,
                            "item": len(state["item_vocab"]) if args.kind == "hybrid" else 0},
            "max_history": pipe.max_history, "inputs": inputs, "model_args": args.to_dict(),
            # Who must run what: the like-history part of a hybrid user tower is the sum of one
            # row per liked video (the history table), which the database computes itself.
            "user_vector": mode, "consumers": CONSUMERS[mode],
            "config": state["config"], "training_window": state["data_window"],
            "split": state["split"], "metrics": state["metrics"], "checkpoint_epoch": state["epoch"],
            "feature_importance": state.get("importance", {}),
            "created_at": datetime.now(UTC).isoformat(), "torch": torch.__version__, "opset": OPSET,
            "pipeline": pipe.to_dict()})
        files = {f: {"sha256": _sha256(tmp / f), "bytes": (tmp / f).stat().st_size} for f in (*FILES, *extra)}
        _write_json(tmp / "manifest.json", {"version": version, "algorithm": "sha256", "files": files,
                                            "created_at": datetime.now(UTC).isoformat()})
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


CONSUMERS = {
    "sql": {"user_vector": "sql: the sum of history_embeddings over the user's latest likes "
                           "(twotower.sql_user_vector); no model file is needed",
            "item_vector": "precomputed in video_embeddings (item_tower.onnx for new videos)"},
    "sql+onnx": {"user_vector": "sql+onnx: user_content.onnx on the feature JSON, plus the sum of "
                                "history_embeddings over the user's latest likes (computed in SQL)",
                 "item_vector": "precomputed in video_embeddings (item_tower.onnx for new videos)"},
    "onnx": {"user_vector": "onnx: user_tower.onnx on the feature JSON (and vocab_item.json for the history)",
             "item_vector": "precomputed in video_embeddings (item_tower.onnx for new videos)"},
}


def sql_user_vector(a: ModelArgs) -> str:
    """How a consumer builds the user vector. A hybrid, unnormalised user tower is the sum of one
    row per liked video (summed in the database: history_embeddings) plus, with the user-content
    MLP on, that MLP of the user features: 'sql' without the MLP, 'sql+onnx' with it (the small
    user_content.onnx; the big history table stays in SQL). Anything else is 'onnx': the whole
    user tower, as the service runs it."""
    if a.kind != "hybrid" or a.normalize:
        return "onnx"
    return "sql+onnx" if (a.use_content and a.user_content) else "sql"


def _export_user_content(model: TwoTower, a: ModelArgs, folder: Path) -> tuple[str]:
    """The user tower's content MLP as its own graph (features -> the non-linear part)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.user.content, (torch.randn(2, a.user_dim),), folder / "user_content.onnx",
                          input_names=["features"], output_names=["embedding"], opset_version=OPSET,
                          dynamo=False, dynamic_axes={"features": {0: "batch"}, "embedding": {0: "batch"}})
    return ("user_content.onnx",)


def _export_onnx(model: TwoTower, a: ModelArgs, folder: Path) -> dict[str, list[str]]:
    b = 2
    uf, hist = torch.randn(b, a.user_dim), torch.zeros(b, 3, dtype=torch.long)
    itf, idx = torch.randn(b, a.item_dim), torch.zeros(b, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.user, (uf, hist), folder / "user_tower.onnx", input_names=["features", "history"],
                          output_names=["embedding"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, "history": {0: "batch", 1: "history_len"},
                                        "embedding": {0: "batch"}})
        torch.onnx.export(model.item, (itf, idx), folder / "item_tower.onnx", input_names=["features", "item_index"],
                          output_names=["embedding"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"features": {0: "batch"}, "item_index": {0: "batch"},
                                        "embedding": {0: "batch"}})
    import onnx

    def names(f: str) -> list[str]:
        return [i.name for i in onnx.load(str(folder / f)).graph.input]

    return {"user_tower": names("user_tower.onnx"), "item_tower": names("item_tower.onnx")}


# --------------------------------------------------------------------------- loading

@dataclass
class Artifacts:
    """A verified artifact folder: ONNX sessions, the pipeline and the vocabularies."""

    path: Path
    meta: dict[str, Any]
    pipeline: FeaturePipeline
    item_vocab: list[str]
    user_session: Any
    item_session: Any

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])

    def item_index(self, video_ids) -> np.ndarray:
        if not hasattr(self, "_item_map"):
            self._item_map = {v: j for j, v in enumerate(self.item_vocab)}
        m = self._item_map
        return np.fromiter((m.get(v, -1) for v in video_ids), dtype=np.int64, count=len(video_ids))

    def embed_items(self, features: np.ndarray, item_index: np.ndarray, batch: int = 4096) -> np.ndarray:
        return self._run(self.item_session, "item_tower",
                         {"features": features.astype(np.float32), "item_index": item_index.astype(np.int64)}, batch)

    def embed_users(self, features: np.ndarray, history: np.ndarray, batch: int = 4096) -> np.ndarray:
        return self._run(self.user_session, "user_tower",
                         {"features": features.astype(np.float32), "history": history.astype(np.int64)}, batch)

    def _run(self, session, tower: str, feeds: dict[str, np.ndarray], batch: int) -> np.ndarray:
        wanted = self.meta["inputs"][tower]
        n = len(feeds["features"])
        out = [session.run(None, {k: feeds[k][s:s + batch] for k in wanted})[0] for s in range(0, n, batch)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def read_json(path: Path) -> Any:
    """A JSON artifact, or ArtifactError with one line (a malformed file is not a traceback)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-export the model") from None


META_KEYS = ("version", "model_type", "embedding_dim", "normalized", "inputs", "pipeline")


def read_meta(folder: Path) -> dict[str, Any]:
    """model_meta.json, with the keys every consumer needs (one line if one is missing)."""
    meta = read_json(Path(folder) / "model_meta.json")
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ArtifactError(f"{folder}/model_meta.json lacks {', '.join(missing)}; re-export the model")
    return meta


def verify_manifest(folder: Path) -> dict[str, Any]:
    """Check an artifact folder against its manifest.json before anything in it is used:
    every listed name is a plain file inside the folder (no `..`, no absolute path, no link out),
    every file matches its size and SHA256 and every required file is listed. Files not in the
    manifest are ignored: nothing reads them and `register` does not copy them (listed_files)."""
    folder = Path(folder)
    mf = folder / "manifest.json"
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not an artifact folder: export one with `twotower export`")
    if not mf.exists():
        raise ArtifactError(f"{folder} has no manifest.json: refusing to load an unverified model")
    manifest = read_json(mf)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(i, dict) for i in files.values()):
        raise ArtifactError(f"{mf}: no 'files' table of name -> {{sha256, bytes}}; re-export the model")
    root = folder.resolve()
    for name, info in files.items():
        f = folder / name
        if Path(name).is_absolute() or "/" in name or "\\" in name or name in ("", ".", "..") \
                or f.resolve().parent != root:
            raise ArtifactError(f"{mf} lists {name!r}, which is not a file of this folder: refusing it")
        if f.is_symlink() or not f.is_file():
            raise ArtifactError(f"{folder}: {name} is missing or not a plain file (listed in manifest.json); "
                                "re-export the model")
        if f.stat().st_size != info.get("bytes") or _sha256(f) != info.get("sha256"):
            raise ArtifactError(f"{folder}: {name} does not match its SHA256 in manifest.json "
                                "(altered or corrupt); re-export the model")
    missing = [f for f in FILES if f not in files]
    if missing:
        raise ArtifactError(f"{folder}: manifest.json does not cover {', '.join(missing)}")
    return manifest


def listed_files(manifest: dict[str, Any]) -> list[str]:
    """The files a verified folder consists of. Anything else in the folder (the Parquet that
    `embed` writes beside the model, a stray file) is ignored: never loaded, never copied."""
    return ["manifest.json", *manifest["files"]]


def load_artifacts(folder: Path, threads: int = 1) -> Artifacts:
    """Verify every file against manifest.json, then load. Refuses a mismatch."""
    import onnxruntime as ort

    folder = Path(folder)
    verify_manifest(folder)
    meta = read_meta(folder)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # serving processes pin threads (DESIGN §10)
    opts.inter_op_num_threads = 1
    try:
        pipeline = FeaturePipeline.from_dict(meta["pipeline"])
        sessions = [ort.InferenceSession(str(folder / f), opts, providers=["CPUExecutionProvider"])
                    for f in ("user_tower.onnx", "item_tower.onnx")]
    except Exception as e:  # onnxruntime raises its own classes; a bad pipeline KeyError/TypeError
        raise ArtifactError(f"{folder}: cannot load the model ({str(e).strip().splitlines()[0][:200]}); "
                            "re-export it") from None
    return Artifacts(folder, meta, pipeline, read_json(folder / "vocab_item.json"), *sessions)
