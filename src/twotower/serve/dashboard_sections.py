"""The dashboard's sections, one function each, from the collected `Page`."""

from __future__ import annotations

import math

from twotower.serve.dashboard_render import bars_ci, e, lines, num, pct, section, stacked, table


def versions(p) -> str:
    rows = []
    for v in p.versions:
        m = v.metrics or {}
        rows.append([e(v.version), e(v.model_type), "yes" if v.is_default else "", "yes" if v.is_active else "",
                     num(v.traffic_share, "{:.2f}"), num(v.videos_embedded),
                     num(m.get("val_ndcg@10"), "{:.4f}"), num(m.get("val_auc"), "{:.4f}"),
                     e(m.get("validation", "")) if isinstance(m.get("validation"), str) else ""])
    failed = "".join(f'<p class="bad">{e(k)}: {e(v)}</p>' for k, v in p.failed.items())
    return section("Model versions and traffic", failed + table(
        ["version", "type", "default", "active", "traffic", "videos embedded", "val NDCG@10", "val AUC", ""],
        rows, "no version registered: `twotower models register`"), "versions")


def arms(p) -> str:
    rows = []
    for a in p.arms:
        lr, ctr = a.metrics["like_rate"], a.metrics["ctr"]
        cmp = a.vs_control.get("like_rate")
        lift = "control" if a.version == p.control else (
            f"{pct(cmp.lift)} [{pct(cmp.lift_ci[0])}, {pct(cmp.lift_ci[1])}], p={num(cmp.p_value, '{:.3f}')}"
            if cmp else "")
        rows.append([e(a.version), num(a.users), num(a.lists), num(a.shown), num(a.answered), num(a.liked),
                     f"{pct(lr.value)} [{pct(lr.ci[0])}, {pct(lr.ci[1])}]",
                     f"{pct(ctr.value)} [{pct(ctr.ci[0])}, {pct(ctr.ci[1])}]", lift])
    chart_lr = bars_ci([(a.version, *_vci(a.metrics["like_rate"])) for a in p.arms])
    chart_ctr = bars_ci([(a.version, *_vci(a.metrics["ctr"])) for a in p.arms])
    body = table(["arm", "users", "lists", "shown", "answered", "liked", "like rate [95% CI]", "CTR [95% CI]",
                  "like-rate lift vs control"], rows, "no lists served in the last 30 days")
    if chart_lr:
        body += "<h3>like rate</h3>" + chart_lr + "<h3>CTR (answered / shown)</h3>" + chart_ctr
    if p.ab_read_at is not None:
        body += f'<p class="muted">read {e(p.ab_read_at.strftime("%H:%M:%S"))} UTC (at most once a minute)</p>'
    return section("A/B arms, last 30 days (users are the unit; delta-method intervals, z-test)", body, "arms")


def _vci(est) -> tuple[float, float, float]:
    lo, hi = est.ci
    return est.value, lo, hi


def over_time(p) -> str:
    days = sorted({d for s in p.daily.values() for d, _ in s})
    if not days:
        return section("Arms over time", '<p class="muted">no lists served in the last 14 days</p>', "daily")
    ix = {d: i for i, d in enumerate(days)}
    labels = [d.strftime("%m-%d") for d in days]
    served = {v: [(ix[d], float(a.lists), math.nan, math.nan) for d, a in s] for v, s in p.daily.items()}
    liked = {v: [(ix[d], a.metrics["like_rate"].value, *a.metrics["like_rate"].ci) for d, a in s]
             for v, s in p.daily.items()}
    body = ("<h3>lists served per day</h3>" + lines(served, labels, fmt=lambda x: num(x))
            + "<h3>like rate per day, with its 95% band</h3>" + lines(liked, labels))
    return section("Arms over time, last 14 days (UTC)", body, "daily")


def requests(p) -> str:
    rows = [[e(r.endpoint), e(r.source), num(r.count), num(r.rate, "{:.2f}"), num(r.p50, "{:.2f}"),
             num(r.p95, "{:.2f}"), num(r.p99, "{:.2f}")] for r in p.latency]
    recs = [r for r in p.latency if r.endpoint == "/v1/recommendations"]
    chart = bars_ci([(f"{r.source} p{q}", v, math.nan, math.nan) for r in recs[:3]
                     for q, v in ((50, r.p50), (95, r.p95), (99, r.p99))], fmt=lambda x: f"{x:.2f} ms")
    body = table(["endpoint", "source", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms"], rows,
                 "no requests since the service started")
    return section("Requests since start (this process)", body + chart, "requests")


def sources(p) -> str:
    total = sum(p.sources.values())
    served, size = p.coverage
    rows = [[e(k), num(v), pct(v / total if total else None)] for k, v in sorted(p.sources.items(), key=lambda kv: -kv[1])]
    body = stacked(p.sources) + table(["source", "lists", "share"], rows, "no lists served in the last 24 hours")
    body += (f'<p id="coverage">catalogue coverage, last 7 days: <b>{num(served)}</b> of {num(size)} videos '
             f"served ({pct(served / size if size else None)})</p>")
    return section("Sources, last 24 hours (two-tower, cold start, fallbacks)", body, "sources")


def batch(p) -> str:
    rows = [[str(r[0]), e(r[1]), e(r[2] or ""), f'<span class="{"bad" if r[3] == "failed" else "ok"}">{e(r[3])}</span>',
             e(r[4].strftime("%Y-%m-%d %H:%M")), num(r[5], "{:.1f} s"), num(r[6]), num(r[7]),
             e((r[8] or "")[:80])] for r in p.runs]
    stale = [[e(key), num(a), num(b), num(c)] for kind, key, a, b, c, _ in p.ops if kind == "version"]
    last = [[e(key), _ago(a), "failed" if b else "ok", num(c, "{:.1f} s"), num(d)]
            for kind, key, a, b, c, d in p.ops if kind == "job"]
    body = (table(["job", "last success", "latest", "latest duration", "failures 24h"], last, "no batch run yet")
            + "<h3>latest runs</h3>" + table(["id", "job", "version", "status", "started", "duration", "users",
                                               "videos", "error"], rows, "no batch run yet")
            + "<h3>embedding staleness (active versions)</h3>"
            + table(["version", "users with a vector older than their last decision", "users with a vector",
                     "videos without a vector"], stale, "no active version"))
    return section("Batch jobs and staleness", body, "batch")


def _ago(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def importance(p) -> str:
    if not p.importance:
        return section("Feature importance", '<p class="muted">none stored for the active versions '
                       "(the feature_importance table is empty)</p>", "importance")
    body = ""
    for v, items in p.importance.items():
        body += f"<h3>{e(v)}</h3>" + bars_ci([(n, s, math.nan, math.nan) for n, s in items[:12]],
                                             fmt=lambda x: f"{x:.4f}")
    return section("Feature importance (permutation, validation slice)", body, "importance")


def all_sections(p) -> str:
    err = section("Database", f'<p class="bad">{e(p.error)}</p>', "error") if p.error else ""
    return err + "".join(f(p) for f in (versions, arms, over_time, requests, sources, batch, importance))
