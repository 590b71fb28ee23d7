"""The dashboard's HTML and its charts as inline SVG (drawn here, so the page needs no
JavaScript library and nothing from the network). Every value is escaped."""

from __future__ import annotations

import math
from html import escape
from string import Template
from typing import Any

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:12px 24px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}main{padding:16px 24px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fit,minmax(520px,1fr))}section{background:#fff;border:1px solid #e2e8f0;
border-radius:8px;padding:12px 16px;overflow-x:auto}h2{font-size:15px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
td,th{padding:3px 6px;border-bottom:1px solid #f1f5f9;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}.ok{color:#16a34a}.bad{color:#dc2626}.muted{color:#64748b}
svg text{font:11px system-ui,sans-serif;fill:#334155}button{font:inherit}
"""
PAGE = Template("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,"><title>twotower dashboard</title>
<style>$css</style></head><body>
<header><h1>twotower</h1><span id="generated">generated $generated UTC</span><span>$db</span>
<span>models loaded: $loaded</span><button id="reload" type="button">reload</button>
<button id="signout" type="button">sign out</button></header>
<main>$sections</main>
<script>$script</script></body></html>""")
SIGN_IN = Template("""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>twotower dashboard: sign in</title>
<style>$css form{margin:15vh auto;max-width:420px;background:#fff;padding:24px;border:1px solid #e2e8f0;
border-radius:8px;display:grid;gap:10px}input{font:inherit;padding:6px}</style></head><body>
<form id="signin"><h2>twotower dashboard</h2>
<label>Service key (or a service_role JWT)<br><input id="key" type="password" autocomplete="off" required></label>
<button type="submit">Open</button><p id="message" class="bad">$message</p>
<p class="muted">The key stays in this tab (sessionStorage) and is sent as a bearer token.</p></form>
<script>$script</script></body></html>""")
# Fetch the page with the key and replace this document with it; shared by both pages. In a
# function of its own: document.write runs it again in the same global scope.
SCRIPT = """(() => {
const KEY = 'twotower_dashboard_key';
async function openDashboard(key) {
  const r = await fetch('/dashboard', {headers: {Authorization: 'Bearer ' + key}, cache: 'no-store'});
  if (r.status !== 200) {
    sessionStorage.removeItem(KEY);
    const m = document.getElementById('message');
    if (m) m.textContent = 'the key was refused (' + r.status + ')'; else location.reload();
    return;
  }
  const html = await r.text();
  document.open(); document.write(html); document.close();
}
const form = document.getElementById('signin');
if (form) {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const key = document.getElementById('key').value.trim();
    sessionStorage.setItem(KEY, key);
    openDashboard(key);
  });
  const saved = sessionStorage.getItem(KEY);
  if (saved) openDashboard(saved);
}
const reload = document.getElementById('reload');
if (reload) reload.addEventListener('click', () => {
  const saved = sessionStorage.getItem(KEY); if (saved) openDashboard(saved); else location.reload();
});
const out = document.getElementById('signout');
if (out) out.addEventListener('click', () => { sessionStorage.removeItem(KEY); location.href = '/dashboard'; });
})();"""


def e(x: Any) -> str:
    return escape(str(x))


def num(x: float | int | None, fmt: str = "{:,.0f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return fmt.format(x)


def pct(x: float | None) -> str:
    return num(None if x is None else 100 * x, "{:.1f}%")


def table(head: list[str], rows: list[list[str]], empty: str = "nothing yet") -> str:
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def section(title: str, body: str, sid: str) -> str:
    return f'<section id="{sid}"><h2>{e(title)}</h2>{body}</section>'


def bars_ci(items: list[tuple[str, float, float, float]], fmt=pct, width: int = 480) -> str:
    """Horizontal bars with 95% interval whiskers: [(label, value, lo, hi)]."""
    items = [i for i in items if math.isfinite(i[1])]
    if not items:
        return ""
    top = max(max(i[3] if math.isfinite(i[3]) else i[1], i[1]) for i in items) or 1.0
    row, left, plot = 22, 130, width - 130 - 60
    x = lambda v: left + plot * max(0.0, min(v, top)) / top  # noqa: E731
    out = [f'<svg class="chart" role="img" width="{width}" height="{row * len(items) + 6}">']
    for k, (label, v, lo, hi) in enumerate(items):
        y = 3 + k * row
        out.append(f'<text x="0" y="{y + 14}">{e(label)[:22]}</text>'
                   f'<rect x="{left}" y="{y + 3}" width="{x(v) - left:.1f}" height="{row - 8}" '
                   f'fill="{PALETTE[k % len(PALETTE)]}" opacity="0.8"/>')
        if math.isfinite(lo) and math.isfinite(hi):
            out.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + row / 2:.1f}" y2="{y + row / 2:.1f}" '
                       'stroke="#0f172a" stroke-width="1.5"/>')
        out.append(f'<text x="{x(max(v, hi if math.isfinite(hi) else v)) + 4:.1f}" y="{y + 14}">{e(fmt(v))}</text>')
    return "".join(out) + "</svg>"


def lines(series: dict[str, list[tuple[int, float, float, float]]], labels: list[str], fmt=pct,
          width: int = 480, height: int = 170) -> str:
    """One line per series over labelled x positions, with its 95% band: {name: [(x, y, lo, hi)]}."""
    pts = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not pts or not labels:
        return ""
    top = max(max(p[3] if math.isfinite(p[3]) else p[1], p[1]) for p in pts) or 1.0
    left, bottom, plot_w, plot_h = 44, height - 34, width - 54, height - 48
    n = max(len(labels) - 1, 1)
    X = lambda i: left + plot_w * i / n  # noqa: E731
    Y = lambda v: bottom - plot_h * max(0.0, min(v, top)) / top  # noqa: E731
    out = [f'<svg class="chart" role="img" width="{width}" height="{height}">',
           f'<line x1="{left}" x2="{left + plot_w}" y1="{bottom}" y2="{bottom}" stroke="#cbd5e1"/>',
           f'<text x="0" y="{Y(top) + 4:.1f}">{e(fmt(top))}</text><text x="0" y="{bottom}">{e(fmt(0.0))}</text>']
    step = max(1, len(labels) // 7)
    for i in range(0, len(labels), step):
        out.append(f'<text x="{X(i) - 14:.1f}" y="{bottom + 14}">{e(labels[i])}</text>')
    for k, (name, s) in enumerate(sorted(series.items())):
        c = PALETTE[k % len(PALETTE)]
        s = [p for p in s if math.isfinite(p[1])]
        band = [p for p in s if math.isfinite(p[2]) and math.isfinite(p[3])]
        if len(band) > 1:
            poly = " ".join(f"{X(i):.1f},{Y(hi):.1f}" for i, _, _, hi in band) + " " + \
                " ".join(f"{X(i):.1f},{Y(lo):.1f}" for i, _, lo, _ in reversed(band))
            out.append(f'<polygon points="{poly}" fill="{c}" opacity="0.12"/>')
        path = " ".join(f"{'M' if j == 0 else 'L'}{X(i):.1f},{Y(v):.1f}" for j, (i, v, _, _) in enumerate(s))
        out.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.extend(f'<circle cx="{X(i):.1f}" cy="{Y(v):.1f}" r="2.5" fill="{c}"/>' for i, v, _, _ in s)
        out.append(f'<text x="{left + 8 + 150 * k}" y="{height - 2}" fill="{c}">■ {e(name)[:22]}</text>')
    return "".join(out) + "</svg>"


def stacked(parts: dict[str, float], width: int = 480) -> str:
    total = sum(parts.values())
    if total <= 0:
        return ""
    out, x = [f'<svg class="chart" role="img" width="{width}" height="46">'], 0.0
    for k, (label, v) in enumerate(sorted(parts.items(), key=lambda kv: -kv[1])):
        w = width * v / total
        c = PALETTE[k % len(PALETTE)]
        out.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="20" fill="{c}"/>'
                   f'<text x="{min(x, width - 110):.1f}" y="36" fill="{c}">{e(label)} {100 * v / total:.1f}%</text>')
        x += w
    return "".join(out) + "</svg>"


def sign_in(message: str | None) -> str:
    return SIGN_IN.substitute(css=CSS, message=e(message or ""), script=SCRIPT)


def page(p) -> str:
    from twotower.serve import dashboard_sections as sections

    db_state = '<span class="ok">database up</span>' if p.database_up and not p.error else \
        '<span class="bad">database down</span>'
    return PAGE.substitute(css=CSS, generated=e(p.generated_at.strftime("%Y-%m-%d %H:%M:%S")), db=db_state,
                           loaded=e(", ".join(p.loaded) or "none"), sections=sections.all_sections(p),
                           script=SCRIPT)
