"""The training loop: threads, the closed form or epochs with early stopping, checkpoints and
resume. Read top to bottom: prepare -> init -> epochs."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from twotower.config import Config
from twotower.data.load import Frames
from twotower.errors import InvalidInput, ModelFitError
from twotower.evaluate.splits import Catalog, Split
from twotower.model import TwoTower
from twotower.train.checkpoints import load_checkpoint, save_checkpoint
from twotower.train.closed_form import distill_content, init_hybrid
from twotower.train.data import (
    console,
    model_args,
    prepare,
)
from twotower.train.importance import permutation_importance
from twotower.train.losses import bce_loss, margin_loss, softmax_loss
from twotower.train.sampling import NegativeSampler, _epoch_examples
from twotower.train.validation import _better, validate

# --------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    seconds: float = 0.0
    importance: dict[str, float] = field(default_factory=dict)




def train(cfg: Config, frames: Frames, catalog: Catalog, split: Split, out_dir: Path,
          resume: bool = False, quiet: bool = False, final_refit: bool = True) -> TrainResult:
    """Train one model on split.fit with early stopping on split.val; best.pt and last.pt
    (for --resume) go to out_dir, with the config used. A closed-form hybrid (epochs 0) is
    fitted on all of train unless final_refit is False (then on fit, so val stays unseen)."""
    metric = cfg.training.early_stopping_metric
    if metric not in ("val_loss", "ndcg@10"):
        raise InvalidInput("training.early_stopping_metric must be val_loss or ndcg@10")
    t = cfg.training
    from threadpoolctl import threadpool_limits

    threads = t.threads or physical_cores()
    torch.set_num_threads(threads)
    with threadpool_limits(threads):  # numpy/scipy's BLAS (the closed forms) as well
        return _train(cfg, frames, catalog, split, out_dir, resume, quiet, final_refit, threads)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share a core's FPU: more threads than
    cores only slows training down)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, core = set(), {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            core[k.strip()] = v.strip()
            if not line.strip():
                cores.add((core.get("physical id"), core.get("core id")))
                core = {}
        cores.add((core.get("physical id"), core.get("core id")))
        n = len(cores - {(None, None)})
    except OSError:
        n = 0
    return max(1, min(allowed, n or allowed))


def _train(cfg: Config, frames: Frames, catalog: Catalog, split: Split, out_dir: Path, resume: bool,
           quiet: bool, final_refit: bool, threads: int) -> TrainResult:
    t, metric = cfg.training, cfg.training.early_stopping_metric
    t0 = time.perf_counter()

    def step(what: str) -> None:  # a line per long step, also in cron logs (no progress bar there)
        if not quiet:
            console.print(f"[{time.perf_counter() - t0:6.1f}s] {what}", highlight=False)

    step(f"preparing features ({threads} thread(s))")
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)
    closed_form_full = cfg.model.kind == "hybrid" and t.epochs == 0 and final_refit
    closed_form = cfg.model.kind == "hybrid" and t.epochs == 0
    p = prepare(cfg, frames, catalog, split, "train" if closed_form_full else "fit")
    if not len(p.item_vocab) and cfg.model.kind == "hybrid":
        raise ModelFitError("no likes in the training window: nothing to learn from")
    model = TwoTower(model_args(cfg, p))
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    history: list[dict] = []
    info: dict[str, Any] = {"threads": threads}
    twin_metrics: dict[str, float] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    start_epoch, best, bad = 0, (math.inf if metric == "val_loss" else -math.inf), 0
    last = out_dir / "last.pt"
    if resume:
        st = load_checkpoint(last)
        if st.get("config_digest") != cfg.digest():
            raise InvalidInput(f"{last} was trained with another configuration: resume needs the same one")
        model.load_state_dict(st["model_state"])
        opt.load_state_dict(st["optimizer_state"])
        start_epoch, best, bad = st["epoch"] + 1, st["best_metric"], st["bad_epochs"]
        history, info = st["history"], st["info"]
    elif cfg.model.kind == "hybrid" and cfg.model.init != "random":
        lam = None
        if closed_form_full and split.val.height:
            # The final closed form is fitted on all of train, val included, so its own score
            # on val means nothing (those rows are excluded from ranking: NDCG 0). The score
            # stored is a twin's, fitted the same way on `fit` alone and scored on val.
            step("validation twin: the closed form fitted on the fit part alone")
            p_fit = prepare(cfg, frames, catalog, split, "fit")
            twin = TwoTower(model_args(cfg, p_fit))
            lam = init_hybrid(twin, p_fit, cfg, "fit", split).get("ease_lambda")
            distill_content(twin, p_fit, cfg, [])
            twin_metrics = validate(twin, p_fit, cfg)
            info["validated_on"] = "a twin fitted on the fit part, scored on val (the model itself saw val)"
        step(f"closed form ({cfg.model.init}) on the {'train' if closed_form_full else 'fit'} part")
        info |= init_hybrid(model, p, cfg, "train" if closed_form_full else "fit", split, lam)
        step("content towers distilled from it (cold start)")
        info |= distill_content(model, p, cfg, history)

    def checkpoint_state(epoch: int, metrics: dict) -> dict[str, Any]:
        return {"model_state": model.state_dict(), "model_args": model.args.to_dict(),
                "pipeline": p.pipeline.to_dict(), "config": cfg.to_dict(), "config_digest": cfg.digest(),
                "item_vocab": p.item_vocab, "metrics": metrics, "split": split.name,
                "data_window": [str(getattr(split, "train" if closed_form_full else "fit")["ts"].min()),
                                str(getattr(split, "train" if closed_form_full else "fit")["ts"].max())],
                "epoch": epoch, "optimizer_state": opt.state_dict(), "best_metric": best,
                "bad_epochs": bad, "history": history, "info": info,
                "created_at": datetime.now().astimezone().isoformat()}

    if closed_form or (cfg.model.kind == "hybrid" and start_epoch >= t.epochs):
        m = twin_metrics if "validated_on" in info else validate(model, p, cfg)
        # importance where the score is honest: the twin's when the model itself saw val
        step("validation score and feature importance")
        imp = permutation_importance(twin, p_fit, t.seed) if "validated_on" in info \
            else permutation_importance(model, p, t.seed)
        save_checkpoint(out_dir / "best.pt", {**checkpoint_state(0, m), "importance": imp})
        save_checkpoint(last, checkpoint_state(0, m))
        return TrainResult(out_dir / "best.pt", m, history, 0, time.perf_counter() - t0, imp)

    if not any(h.get("stage") == "start" for h in history):  # the starting point, before epoch 0
        history.append({"stage": "start", "epoch": -1, **validate(model, p, cfg)})
    sampler = NegativeSampler(p, t.sampler_mix)
    fit = p.split.fit
    fu, fi, fy = fit["u"].to_numpy(), fit["i"].to_numpy(), fit["like"].to_numpy()
    log_q = torch.from_numpy(np.log((p.pop + 1.0) / (p.pop + 1.0).sum())).float()
    best_metrics: dict[str, float] = {}
    progress = Progress(TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} batches"),
                        TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                        console=console, disable=quiet, transient=True)
    with progress:
        for epoch in range(start_epoch, t.epochs):
            rng = np.random.default_rng([t.seed, epoch])
            torch.manual_seed(t.seed * 1000 + epoch)
            e0 = time.perf_counter()
            sampler.refresh(model)
            users, items, labels, n_pos, bsz = _epoch_examples(fu, fi, fy, sampler, rng, t, model)
            n_batches = math.ceil(len(users) / bsz)
            task = progress.add_task("train", total=n_batches, epoch=epoch, loss=float("nan"))
            model.train()
            fb_time, total = 0.0, 0.0
            for b in range(n_batches):
                sl = slice(b * bsz, (b + 1) * bsz)
                ub, ib, yb = users[sl], items[sl], labels[sl]
                uf, hist = p.user_x[ub], p.history[torch.from_numpy(ub)]
                itf, iidx = p.item_x[ib], torch.from_numpy(p.cat2model[ib])
                f0 = time.perf_counter()
                hist = torch.where(hist == iidx[:, None], torch.full_like(hist, -1), hist)  # no self-leak
                u, v = model.user(uf, hist), model.item(itf, iidx)
                if t.loss == "bce":
                    loss = bce_loss(model.score(u, v), torch.from_numpy(yb))
                elif t.loss == "margin":
                    r = t.negative_sampling_ratio  # examples come as [pos, neg * r] groups
                    s = model.score(u, v).view(-1, r + 1)
                    loss = margin_loss(s[:, :1], s[:, 1:], t.margin)
                else:
                    loss = softmax_loss(u, v, torch.from_numpy(ib), t.temperature,
                                        log_q[torch.from_numpy(ib)] if t.logq_correction else None)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.gradient_clip_norm)
                opt.step()
                fb_time += time.perf_counter() - f0
                if not torch.isfinite(loss):
                    raise ModelFitError(f"training diverged at epoch {epoch} (loss {float(loss)}): "
                                        "lower training.lr or raise training.gradient_clip_norm")
                total += loss.item()
                progress.update(task, advance=1, loss=total / (b + 1))
            progress.remove_task(task)
            epoch_s = time.perf_counter() - e0
            m = validate(model, p, cfg)
            row = {"epoch": epoch, "loss": total / max(n_batches, 1), **m, "seconds": epoch_s,
                   "train_seconds": fb_time, "positives_per_s": n_pos / epoch_s,
                   "prep_share": 1 - fb_time / epoch_s}
            history.append(row)
            if not quiet:
                console.print(f"epoch {epoch}: loss {row['loss']:.4f} "
                              + " ".join(f"{k} {v:.4f}" for k, v in m.items())
                              + f" | {row['positives_per_s']:,.0f} pos/s, data prep {row['prep_share']:.0%}")
            key = "val_loss" if metric == "val_loss" else "val_ndcg@10"
            cur = m.get(key, math.nan)
            if math.isfinite(cur) and _better(metric, cur, best, t.min_delta):
                best, bad, best_metrics = cur, 0, m
                save_checkpoint(out_dir / "best.pt", checkpoint_state(epoch, m))
            else:
                bad += 1
            save_checkpoint(last, checkpoint_state(epoch, m))
            if bad >= t.early_stopping_patience:
                if not quiet:
                    console.print(f"early stop: no {key} improvement for {bad} epochs")
                break
    if not (out_dir / "best.pt").exists():
        save_checkpoint(out_dir / "best.pt", checkpoint_state(t.epochs - 1, history[-1] if history else {}))
    step("feature importance of the kept checkpoint")
    best_state = load_checkpoint(out_dir / "best.pt")  # importance of the model that is kept
    model.load_state_dict(best_state["model_state"])
    imp = permutation_importance(model, p, t.seed)
    save_checkpoint(out_dir / "best.pt", {**best_state, "importance": imp})
    epochs_run = sum(1 for h in history if "stage" not in h)  # not the starting point, not distillation
    return TrainResult(out_dir / "best.pt", best_metrics, history, epochs_run, time.perf_counter() - t0, imp)
