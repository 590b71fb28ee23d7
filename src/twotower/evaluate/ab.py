"""A/B decisions with statistics: per arm, lists served, answers, like rate and CTR with 95%
confidence intervals, and each arm's difference from the control with a two-sided z-test.

The arms are assigned per user (a stable hash), so the user is the unit of analysis: a metric
such as likes per shown video is a ratio of per-user sums (sum liked / sum shown), and its
variance comes from the delta method over users (Deng, Knoblich, Lu 2018), not from treating
every shown video as independent, which would overstate the evidence when one user sees many.
The minimum sample size is the users per arm needed to detect a relative lift of `lift` at
alpha 0.05 with 80% power: n = (z_0.975 + z_0.8)^2 * 2 * s^2 / (lift * R)^2, with s^2 the
per-user variance of the linearised metric."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
import psycopg

from twotower.db import sql

Z95, Z80 = 1.959963984540054, 0.8416212335729143
METRICS = {  # name -> (numerator, denominator)
    "likes_per_shown": ("liked", "shown"),
    "ctr": ("answered", "shown"),
    "like_rate": ("liked", "answered"),
}


@dataclass
class Estimate:
    value: float
    se: float

    @property
    def ci(self) -> tuple[float, float]:
        return self.value - Z95 * self.se, self.value + Z95 * self.se


@dataclass
class Comparison:
    """An arm against the control on one metric."""

    diff: float
    se: float
    lift: float  # relative: treatment / control - 1
    lift_ci: tuple[float, float]
    z: float
    p_value: float


@dataclass
class Arm:
    version: str
    users: int
    lists: int
    shown: int
    answered: int
    liked: int
    metrics: dict[str, Estimate] = field(default_factory=dict)
    vs_control: dict[str, Comparison] = field(default_factory=dict)
    users_needed: dict[str, int | None] = field(default_factory=dict)  # for the `lift` given


def ratio(num: np.ndarray, den: np.ndarray) -> Estimate:
    """sum(num) / sum(den) over users, with its delta-method standard error."""
    n = len(num)
    if n == 0 or den.sum() == 0:
        return Estimate(float("nan"), float("nan"))
    r = num.sum() / den.sum()
    if n < 2:
        return Estimate(float(r), float("nan"))
    mu_d = den.mean()
    lin = (num - r * den) / mu_d  # the linearised per-user metric (mean 0)
    return Estimate(float(r), float(np.sqrt(lin.var(ddof=1) / n)))


def _per_user_sd(num: np.ndarray, den: np.ndarray) -> float:
    if len(num) < 2 or den.sum() == 0:
        return float("nan")
    r = num.sum() / den.sum()
    return float(((num - r * den) / den.mean()).std(ddof=1))


def compare(c: Estimate, t: Estimate) -> Comparison:
    diff = t.value - c.value
    se = math.sqrt(c.se ** 2 + t.se ** 2) if math.isfinite(c.se) and math.isfinite(t.se) else float("nan")
    z = diff / se if se and math.isfinite(se) else float("nan")
    p = math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else float("nan")
    base = c.value or float("nan")
    # the lift's interval: the difference's, relative to the control (first-order delta method)
    return Comparison(diff, se, t.value / base - 1, ((diff - Z95 * se) / base, (diff + Z95 * se) / base), z, p)


def users_per_arm(sd: float, base: float, lift: float) -> int | None:
    """Users per arm to detect a relative `lift` of `base` (alpha 0.05 two-sided, power 0.8)."""
    if not (math.isfinite(sd) and base > 0 and lift > 0):
        return None
    return math.ceil((Z95 + Z80) ** 2 * 2 * sd ** 2 / (lift * base) ** 2)


DAY_SCHEMA = {"day": pl.Date, "version": pl.Utf8, "user_id": pl.Utf8, "lists": pl.Int64, "shown": pl.Int64,
              "answered": pl.Int64, "liked": pl.Int64}


def per_user_day(conn: psycopg.Connection, since: datetime) -> pl.DataFrame:
    """ab_users.sql's rows: per arm, user and UTC day (fallback lists left out)."""
    rows = conn.execute(sql("ab_users"), {"since": since, "fallback": False}).fetchall()
    return pl.DataFrame(rows, schema=DAY_SCHEMA, orient="row")


def over_days(days: pl.DataFrame) -> pl.DataFrame:
    """Per arm and user, over all the days (a list belongs to one day, so sums are exact)."""
    return days.group_by("version", "user_id").agg(pl.col("lists", "shown", "answered", "liked").sum())


def per_user(conn: psycopg.Connection, since: datetime) -> pl.DataFrame:
    return over_days(per_user_day(conn, since))


def report(users: pl.DataFrame, control: str | None, lift: float = 0.05) -> list[Arm]:
    """Every arm's totals and estimates, and its comparison with `control` (default: the arm
    that served the most users)."""
    arms: list[Arm] = []
    cols: dict[str, dict[str, np.ndarray]] = {}
    for version, g in sorted(users.group_by("version"), key=lambda kv: kv[0][0]):
        v = version[0]
        c = {k: g[k].to_numpy().astype(np.float64) for k in ("lists", "shown", "answered", "liked")}
        cols[v] = c
        a = Arm(v, g.height, int(c["lists"].sum()), int(c["shown"].sum()), int(c["answered"].sum()),
                int(c["liked"].sum()))
        for m, (num, den) in METRICS.items():
            a.metrics[m] = ratio(c[num], c[den])
            a.users_needed[m] = users_per_arm(_per_user_sd(c[num], c[den]), a.metrics[m].value, lift)
        arms.append(a)
    if not arms:
        return arms
    control = control if control in cols else max(arms, key=lambda a: (a.users, a.version)).version
    base = next(a for a in arms if a.version == control)
    for a in arms:
        if a.version != control:
            a.vs_control = {m: compare(base.metrics[m], a.metrics[m]) for m in METRICS}
    return arms


@dataclass
class Verdict:
    promote: bool
    reason: str


def decide(arms: list[Arm], candidate: str, control: str, min_lift: float, alpha: float = 0.05,
           metric: str = "likes_per_shown") -> Verdict:
    """Promote only when the candidate beats the control on `metric` with p < alpha and the
    lower end of the lift's 95% interval is at least `min_lift`."""
    by = {a.version: a for a in arms}
    if candidate not in by:
        return Verdict(False, f"{candidate} served no lists in the window: nothing to judge it by")
    if control not in by:
        return Verdict(False, f"the control {control} served no lists in the window")
    if candidate == control:
        return Verdict(False, f"{candidate} is the control")
    c = by[candidate].vs_control.get(metric) if by[candidate].vs_control else None
    if c is None:  # the report's control was another arm: compare directly
        c = compare(by[control].metrics[metric], by[candidate].metrics[metric])
    need = by[control].users_needed.get(metric)
    sizes = f"{by[candidate].users} and {by[control].users} users"
    if not math.isfinite(c.p_value):
        return Verdict(False, f"not enough data to test ({sizes})")
    if c.p_value >= alpha:
        hint = f"; about {need:,} users per arm are needed to see a {min_lift:.0%} lift" if need else ""
        return Verdict(False, f"no significant difference on {metric}: lift {c.lift:+.1%} "
                              f"(95% CI {c.lift_ci[0]:+.1%} to {c.lift_ci[1]:+.1%}), p = {c.p_value:.3f} "
                              f">= {alpha} with {sizes}{hint}")
    if c.lift_ci[0] < min_lift:
        return Verdict(False, f"{metric} lift {c.lift:+.1%} is significant (p = {c.p_value:.2g}) but its 95% CI "
                              f"starts at {c.lift_ci[0]:+.1%}, below the required {min_lift:+.1%}")
    return Verdict(True, f"{metric} lift {c.lift:+.1%} (95% CI {c.lift_ci[0]:+.1%} to {c.lift_ci[1]:+.1%}), "
                         f"p = {c.p_value:.2g}, {sizes}")
