"""`twotower ab`: A/B reports with confidence intervals, and promotion only on evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from twotower import db, registry
from twotower.config import Settings
from twotower.console import make_console
from twotower.errors import InvalidInput
from twotower.evaluate import ab

ab_app = typer.Typer(no_args_is_help=True, help="A/B tests: per-arm statistics, promotion on evidence.")
console = make_console()
DAYS = Annotated[int, typer.Option("--days", help="served lists of the last N days")]
CONTROL = Annotated[str | None, typer.Option("--control", help="the control arm (default: the default version)")]


def _load(days: int, control: str | None, lift: float) -> tuple[list[ab.Arm], str | None]:
    with db.store(Settings()) as conn:
        users = ab.per_user(conn, datetime.now(UTC) - timedelta(days=days))
        default = conn.execute("SELECT version FROM embedding_model_versions WHERE is_default").fetchone()
    control = control or (default[0] if default else None)
    return ab.report(users, control, lift), control


def _fmt(e: ab.Estimate) -> str:
    lo, hi = e.ci
    return f"{e.value:.2%} [{lo:.2%}, {hi:.2%}]"


@ab_app.command("report")
def ab_report(days: DAYS = 14, control: CONTROL = None,
              lift: Annotated[float, typer.Option("--lift", help="relative lift for the sample-size line")] = 0.05,
              ) -> None:
    """Per arm: users, lists, videos shown, answers, likes; likes per shown video, CTR and like
    rate with 95% CIs (delta method over users); each arm against the control (z-test)."""
    arms, control = _load(days, control, lift)
    if not arms:
        console.print(f"no served lists in the last {days} days (the service and recommend_videos log them)")
        return
    control = control if any(a.version == control for a in arms) else max(arms, key=lambda a: a.users).version
    t = Table("arm", "users", "lists", "shown", "answered", "liked", "likes/shown [95% CI]",
              "CTR [95% CI]", "like rate [95% CI]", f"vs {control}: lift likes/shown [95% CI], p")
    for a in arms:
        c = a.vs_control.get("likes_per_shown")
        vs = "(control)" if a.version == control else (
            f"{c.lift:+.1%} [{c.lift_ci[0]:+.1%}, {c.lift_ci[1]:+.1%}], p={c.p_value:.3g}" if c else "")
        t.add_row(a.version, f"{a.users:,}", f"{a.lists:,}", f"{a.shown:,}", f"{a.answered:,}", f"{a.liked:,}",
                  _fmt(a.metrics["likes_per_shown"]), _fmt(a.metrics["ctr"]), _fmt(a.metrics["like_rate"]), vs)
    console.print(t)
    base = next(a for a in arms if a.version == control)
    need = base.users_needed.get("likes_per_shown")
    if need:
        console.print(f"to detect a {lift:.0%} lift in likes/shown (alpha 0.05, power 0.8): about {need:,} users per arm")


@ab_app.command("promote")
def ab_promote(
    candidate: Annotated[str, typer.Argument(help="the arm to make the default")],
    min_lift: Annotated[float, typer.Option("--min-lift", help="required relative lift (0.02 = 2%), at the "
                                                               "lower end of the 95% CI")] = 0.0,
    days: DAYS = 14, control: CONTROL = None,
    alpha: Annotated[float, typer.Option("--alpha", help="significance level")] = 0.05,
) -> None:
    """Make CANDIDATE the only active version, only if it beats the control on likes per shown
    video with p < alpha and a lift whose 95% CI starts at --min-lift or above; else say why not
    (exit 1) and change nothing."""
    arms, control = _load(days, control, max(min_lift, 0.01))
    if control is None:
        raise InvalidInput("no default version to compare with: pass --control")
    v = ab.decide(arms, candidate, control, min_lift, alpha)
    if not v.promote:
        console.print(f"not promoting {candidate}: {v.reason}", soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    with db.connection(Settings()) as conn:
        registry.activate(conn, candidate)
    console.print(f"promoted {candidate} over {control}: {v.reason}", soft_wrap=True, highlight=False)
