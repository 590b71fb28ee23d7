"""Evaluation report: report.json, report.md and PNG plots under $TWOTOWER_HOME/reports/<run>/."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from twotower.evaluate import SEED_TARGETS, ModelResult

MAIN_COLUMNS = ["ndcg@10", "precision@10", "recall@10", "recall@50", "mrr@10", "hitrate@10",
                "auc", "coverage@10", "diversity@10", "novelty@10"]


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL, cwd=Path(__file__).parent).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown_table(results: list[ModelResult], columns: list[str] = MAIN_COLUMNS) -> str:
    cols = [c for c in columns if any(c in r.metrics for r in results)]
    lines = ["| model | " + " | ".join(cols) + " | fit s |", "|---" * (len(cols) + 2) + "|"]
    for r in results:
        vals = [f"{r.metrics[c]:.4f}" if c in r.metrics else "-" for c in cols]
        lines.append(f"| {r.name} | " + " | ".join(vals) + f" | {r.fit_seconds:.1f} |")
    return "\n".join(lines)


REFERENCES = ("ease", "popularity")  # what the others are measured against, the first present


def reference_of(results: list[ModelResult]) -> ModelResult | None:
    by_name = {r.name: r for r in results}
    return next((by_name[n] for n in REFERENCES if n in by_name), None)


def comparisons(results: list[ModelResult], metric: str = "ndcg@10") -> dict[str, dict]:
    """Each model's `metric` as a multiple of the reference's (EASE, else popularity), with a
    95% paired bootstrap interval over users: whether a difference is more than this split's noise."""
    ref = reference_of(results)
    out: dict[str, dict] = {}
    for r in results:
        c = r.compare_to(ref, metric) if ref is not None and r is not ref else None
        if c is not None:
            out[r.name] = {"reference": ref.name, "metric": metric, "ratio": round(c.ratio, 4),
                           "ci95": [round(c.low, 4), round(c.high, 4)], "users": c.users}
    return out


def comparison_table(rows: dict[str, dict]) -> str:
    """Markdown of `comparisons(...)`: model | x reference | 95% CI | users; empty when nothing
    is comparable (the bootstrap runs once, in comparisons)."""
    if not rows:
        return ""
    first = next(iter(rows.values()))
    lines = [f"| model | {first['metric']} x {first['reference']} | 95% CI (paired bootstrap over users) | users |",
             "|---|---|---|---|"]
    for name, c in rows.items():
        lines.append(f"| {name} | {c['ratio']:.3f} | {c['ci95'][0]:.3f}-{c['ci95'][1]:.3f} | {c['users']} |")
    return "\n".join(lines)


def targets_table(results: list[ModelResult]) -> str:
    lines = ["| model | " + " | ".join(f"{k} > {v}" for k, v in SEED_TARGETS.items()) + " |",
             "|---" * (len(SEED_TARGETS) + 1) + "|"]
    for r in results:
        cells = []
        for k, v in SEED_TARGETS.items():
            x = r.metrics.get(k)
            cells.append("-" if x is None else f"{x:.3f} {'met' if x > v else 'not met'}")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir: Path, results: list[ModelResult], meta: dict) -> Path:
    """Write the report atomically (tmp dir, then rename). Returns the folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "git_commit": git_commit(), "created_at": datetime.now(UTC).isoformat()}
    vs = comparisons(results)
    body = {"meta": meta, "models": {r.name: {"metrics": r.metrics, "segments": r.segments,
                                              "fit_seconds": r.fit_seconds,
                                              "eval_seconds": r.eval_seconds, "info": r.info,
                                              **({"vs_reference": vs[r.name]} if r.name in vs else {})}
                                     for r in results}}
    (tmp / "report.json").write_text(json.dumps(body, indent=2, default=str))
    md = [f"# Evaluation report ({meta.get('split')})", "",
          f"- data window: {meta.get('data_window')}", f"- split: {json.dumps(meta.get('split_info'))}",
          f"- git commit: {meta['git_commit']}", "", markdown_table(results), ""]
    if vs:
        md += ["Against the reference, user by user (a ratio whose interval holds 1.000 is within this "
               "split's noise):", "", comparison_table(vs), ""]
    md += ["Seed targets (set for another data set; reported, not tuned for):", "", targets_table(results), ""]
    if any(r.segments for r in results):
        md += ["## Segments", "", "| model | segment | users | ndcg@10 | recall |", "|---|---|---|---|---|"]
        for r in results:
            for seg, v in r.segments.items():
                rec = next((x for k, x in v.items() if k.startswith("recall")), 0.0)
                md.append(f"| {r.name} | {seg} | {v['users']} | {v['ndcg@10']:.4f} | {rec:.4f} |")
    for r in results:
        imp = (r.info or {}).get("feature_importance") or {}
        if imp:  # permutation importance of the trained model's inputs (train/importance.py)
            md += [f"## Feature importance: {r.name}", "", "NDCG@10 drop on the validation slice when the input is "
                   "shuffled across users (0: the model does not read it).", "", "| input | drop |", "|---|---|"]
            md += [f"| {k} | {v:+.4f} |" for k, v in imp.items()] + [""]
    (tmp / "report.md").write_text("\n".join(md) + "\n")
    _plots(tmp, results, meta.get("ks", [10, 20, 50]))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def _plots(folder: Path, results: list[ModelResult], ks: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, ("ndcg", "recall", "precision"), strict=True):
        for r in results:
            ys = [r.metrics.get(f"{metric}@{k}", float("nan")) for k in ks]
            ax.plot(ks, ys, marker="o", label=r.name)
        ax.set_title(f"{metric}@K")
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "metrics_vs_k.png", dpi=110)
    plt.close(fig)

    segs = sorted({s for r in results for s in r.segments})
    if segs:
        import numpy as np

        fig, ax = plt.subplots(figsize=(9, 3.8))
        w = 0.8 / max(len(results), 1)
        x = np.arange(len(segs))
        for j, r in enumerate(results):
            ax.bar(x + j * w, [r.segments.get(s, {}).get("ndcg@10", 0.0) for s in segs], w, label=r.name)
        ax.set_xticks(x + w * (len(results) - 1) / 2, segs)
        ax.set_ylabel("NDCG@10")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(folder / "segments.png", dpi=110)
        plt.close(fig)
