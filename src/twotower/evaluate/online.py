"""Online evaluation: join the served lists (recommendation_log) with the decisions that
followed, per model version, for A/B comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from twotower.db import sql


@dataclass
class OnlineMetrics:
    version: str
    lists: int
    shown: int
    answered: int
    liked: int

    @property
    def ctr(self) -> float:
        return self.answered / self.shown if self.shown else 0.0

    @property
    def like_rate(self) -> float:
        return self.liked / self.answered if self.answered else 0.0

    @property
    def likes_per_shown(self) -> float:
        return self.liked / self.shown if self.shown else 0.0


def online_metrics(conn: psycopg.Connection, since: datetime | None = None) -> list[OnlineMetrics]:
    query = sql("online_metrics").replace("{ab_users}", sql("ab_users").rstrip().rstrip(";"))
    rows = conn.execute(query, {"since": since or datetime(1970, 1, 1), "fallback": True}).fetchall()
    return [OnlineMetrics(*r) for r in rows]
