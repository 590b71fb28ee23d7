"""Synthetic swipe data that a model can learn from and a benchmark can tell apart.

Latent tastes live in a small space shared by tags, performers, makers and genres; a video's
latent vector comes from its metadata, a user's from a few favourite tags plus noise. Exposure
follows a power law (popular videos are shown more), like probability is a logistic function
of taste fit, price fit and noise. Everything is vectorised numpy with one seeded Generator, so
a seed always gives the same data; loading is COPY (see load.copy_frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl
import psycopg

from twotower.data.load import copy_frame
from twotower.db import sql
from twotower.errors import InvalidInput

LATENT = 16
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)  # "now" of the synthetic world: fixed for determinism


@dataclass
class SynthSpec:
    users: int = 2000
    videos: int = 5000
    decisions: int = 100_000
    seed: int = 0
    n_tags: int = 300
    n_performers: int = 3000
    n_makers: int = 1000
    n_genres: int = 20
    cold_user_share: float = 0.05  # users with no decisions
    cold_video_share: float = 0.03  # brand-new videos nobody has seen
    days: int = 180  # decisions span this many days before EPOCH
    # Knobs of the world (defaults make popularity a strong but beatable baseline):
    popularity_shape: float = 1.2  # Pareto shape of video quality: lower = more skewed exposure
    feed_beta: float = 8.0  # how strongly the feed picks videos by taste
    fav_tag_skew: float = 0.5  # Zipf exponent of users' favourite tags: lower = more diverse tastes
    taste_noise: float = 0.8  # idiosyncratic part of a user's taste
    like_scale: float = 6.0  # weight of taste fit in the like logit

    def validate(self) -> None:
        if self.users < 2 or self.videos < 10 or self.decisions < 1:
            raise InvalidInput("synth needs at least 2 users, 10 videos and 1 decision")
        warm_users = self.users - int(self.users * self.cold_user_share)
        warm_videos = self.videos - int(self.videos * self.cold_video_share)
        if self.decisions > 0.5 * warm_users * warm_videos:
            raise InvalidInput(
                f"{self.decisions} decisions is more than half of all (user, video) pairs: "
                "ask for fewer decisions or more users/videos")


@dataclass
class Truth:
    """The hidden world behind the data, for a simulator to answer cards with (no model reads it):
    rows in the order of the profiles and videos frames."""

    user_vec: np.ndarray  # (U, LATENT) tastes
    video_vec: np.ndarray  # (V, LATENT)
    price: np.ndarray  # (V,)
    price_tol: np.ndarray  # (U,)
    pickiness: np.ndarray  # (U,)
    like_scale: float
    cold_video: np.ndarray  # (V,) bool: released in the last days, never shown in the logs

    def like_logit(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The like logit of generate() before its noise (N(0, 0.6) is added per answer)."""
        fit = np.einsum("ij,ij->i", self.user_vec[u], self.video_vec[v])
        pen = np.clip(np.log(self.price[v] / self.price_tol[u]), 0, None)
        return self.like_scale * fit - 1.2 * pen - self.pickiness[u] - 1.4


@dataclass
class SynthData:
    profiles: pl.DataFrame
    videos: pl.DataFrame
    tags: pl.DataFrame
    performers: pl.DataFrame
    decisions: pl.DataFrame
    truth: Truth | None = None


def _before_epoch(us: np.ndarray) -> pl.Series:
    """Timestamps `us` microseconds before EPOCH, as a UTC datetime series."""
    base = np.datetime64(EPOCH.replace(tzinfo=None), "us")
    return pl.Series(base - us.astype(np.int64).astype("timedelta64[us]")).dt.replace_time_zone("UTC")


def _zipf_probs(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def _id_series(prefix: str, n: int) -> pl.Series:
    return pl.select(pl.lit(prefix) + pl.Series("i", np.arange(n)).cast(pl.Utf8)
                     .str.zfill(len(str(max(n - 1, 1))))).to_series()


def _multi_assign(rng: np.random.Generator, n_items: int, probs: np.ndarray, lo: int, hi: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For each item draw lo..hi labels from `probs` (no duplicates): (item_idx, label_idx)."""
    counts = rng.integers(lo, hi + 1, size=n_items)
    item = np.repeat(np.arange(n_items), counts)
    label = rng.choice(len(probs), size=item.size, p=probs)
    key = np.unique(item.astype(np.int64) * len(probs) + label)
    return key // len(probs), key % len(probs)


def _feed(rng: np.random.Generator, users: np.ndarray, user_vec: np.ndarray,
          video_vec: np.ndarray, exposure: np.ndarray, n_cand: int = 6, beta: float = 4.0,
          chunk: int = 500_000) -> np.ndarray:
    """What each user is shown: `n_cand` popularity-drawn candidates, one picked by a softmax
    on taste fit (Gumbel trick), as an app feed or a search would. Exposure is then popular
    *and* taste-driven, as in real logs."""
    out = np.empty(users.size, dtype=np.int64)
    for s in range(0, users.size, chunk):
        u = users[s:s + chunk]
        cand = rng.choice(video_vec.shape[0], size=(u.size, n_cand), p=exposure)
        fit = np.einsum("bd,bcd->bc", user_vec[u], video_vec[cand])
        pick = np.argmax(beta * fit + rng.gumbel(size=fit.shape), axis=1)
        out[s:s + chunk] = cand[np.arange(u.size), pick]
    return out


def generate(spec: SynthSpec) -> SynthData:
    """Build the whole data set in memory (vectorised). 10M decisions take well under a minute."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    U, V, D = spec.users, spec.videos, spec.decisions
    n_tags, n_perf, n_mak, n_gen = spec.n_tags, spec.n_performers, spec.n_makers, spec.n_genres

    # Latent vectors of every metadata term.
    tag_vec = rng.normal(size=(n_tags, LATENT))
    perf_vec = rng.normal(size=(n_perf, LATENT))
    mak_vec = rng.normal(size=(n_mak, LATENT))
    gen_vec = rng.normal(size=(n_gen, LATENT))

    # ---- videos
    genre = rng.choice(n_gen, size=V, p=_zipf_probs(n_gen, 1.0))
    maker = rng.choice(n_mak, size=V, p=_zipf_probs(n_mak, 1.05))
    tv_item, tv_tag = _multi_assign(rng, V, _zipf_probs(n_tags, 1.1), 2, 6)
    pv_item, pv_perf = _multi_assign(rng, V, _zipf_probs(n_perf, 1.05), 1, 3)
    tag_sum = np.zeros((V, LATENT))
    np.add.at(tag_sum, tv_item, tag_vec[tv_tag])
    perf_sum = np.zeros((V, LATENT))
    np.add.at(perf_sum, pv_item, perf_vec[pv_perf])
    video_vec = _unit(_unit(tag_sum) * 1.0 + _unit(perf_sum) * 0.6 + mak_vec[maker] * 0.25
                      + gen_vec[genre] * 0.35 + rng.normal(scale=0.3, size=(V, LATENT)))
    maker_price = np.exp(rng.normal(7.3, 0.5, size=n_mak))  # ~1500 yen median per maker
    price = np.round(maker_price[maker] * np.exp(rng.normal(0, 0.35, size=V)), -1)
    duration = np.clip(np.exp(rng.normal(np.log(5400), 0.45, size=V)), 300, 6 * 3600).astype(np.int64)
    released_days_ago = rng.uniform(0, 5 * 365, size=V)
    cold_video = np.zeros(V, dtype=bool)
    n_cold_v = int(V * spec.cold_video_share)
    cold_video[rng.choice(V, size=n_cold_v, replace=False)] = True
    released_days_ago[cold_video] = rng.uniform(0, 3, size=n_cold_v)  # released in the last days
    released = _before_epoch(released_days_ago * 86400e6)
    # Power-law popularity (Pareto quality), fresher videos a little more exposed.
    quality = rng.pareto(spec.popularity_shape, size=V) + 0.05
    exposure = quality * np.exp(-released_days_ago / 1500)
    exposure[cold_video] = 0
    exposure /= exposure.sum()

    # ---- users
    fav = rng.choice(n_tags, size=(U, 3), p=_zipf_probs(n_tags, spec.fav_tag_skew))
    user_vec = _unit(tag_vec[fav].sum(axis=1) + rng.normal(scale=spec.taste_noise, size=(U, LATENT)))
    price_tol = np.exp(rng.normal(7.5, 0.5, size=U))  # price above which likes fall off
    pickiness = rng.normal(0, 0.5, size=U)
    pref_hour = rng.normal(21, 2.5, size=U)
    cold_user = np.zeros(U, dtype=bool)
    n_cold_u = int(U * spec.cold_user_share)
    cold_user[rng.choice(U, size=n_cold_u, replace=False)] = True
    joined_days_ago = rng.uniform(spec.days * 0.2, 2 * 365, size=U)
    joined_days_ago[cold_user] = rng.uniform(0, 7, size=n_cold_u)
    activity = rng.lognormal(0, 1.3, size=U)  # heavy-tailed: a few users swipe a lot
    activity[cold_user] = 0
    activity /= activity.sum()

    # ---- decisions: (user, video) pairs, deduplicated; draw 15% extra to survive dedup
    pairs = np.empty(0, dtype=np.int64)
    want = D
    while pairs.size < D:
        draw = int(want * 1.15) + 16
        u = rng.choice(U, size=draw, p=activity)
        v = _feed(rng, u, user_vec, video_vec, exposure, beta=spec.feed_beta)
        key = np.concatenate([pairs, u.astype(np.int64) * V + v])
        _, first = np.unique(key, return_index=True)
        pairs = key[np.sort(first)]
        want = D - pairs.size
    pairs = pairs[:D]
    du, dv = pairs // V, pairs % V

    fit = np.empty(D)
    for s in range(0, D, 1_000_000):  # chunked: (1M, 16) gathers
        e = slice(s, s + 1_000_000)
        fit[e] = np.einsum("ij,ij->i", user_vec[du[e]], video_vec[dv[e]])
    price_pen = np.clip(np.log(price[dv] / price_tol[du]), 0, None)
    logit = spec.like_scale * fit - 1.2 * price_pen - pickiness[du] - 1.4 + rng.normal(scale=0.6, size=D)
    like = rng.random(D) < 1.0 / (1.0 + np.exp(-logit))

    # Time: uniformly over the window after the user joined; hour follows a daily rhythm.
    start = np.maximum(spec.days, 0) - np.minimum(joined_days_ago[du], spec.days)
    day = np.floor(start + rng.random(D) * (spec.days - start)).astype(np.int64)
    hour = np.mod(np.round(rng.normal(pref_hour[du], 3.0)), 24).astype(np.int64)
    seconds = rng.integers(0, 3600, size=D)
    created = _before_epoch(((spec.days - day) * 86400 - hour * 3600 - seconds) * 1_000_000)

    uid = _id_series("u", U)
    vid = _id_series("v", V)
    profiles = pl.DataFrame({
        "user_id": uid,
        "display_name": pl.select(pl.lit("user ") + uid).to_series(),
        "created_at": _before_epoch(joined_days_ago * 86400e6),
        "age_range": pl.Series(np.array(["18-24", "25-34", "35-44", "45-54", "55+"])[
            rng.choice(5, size=U, p=[0.2, 0.35, 0.25, 0.12, 0.08])]),
        "region": pl.Series(np.array(["kanto", "kansai", "chubu", "kyushu", "tohoku", "hokkaido"])[
            rng.choice(6, size=U)]),
    })
    genre_names = _id_series("genre_", n_gen)
    maker_names = _id_series("maker_", n_mak)
    tag_names = _id_series("tag_", n_tags)
    perf_names = _id_series("performer_", n_perf)
    videos = pl.DataFrame({
        "id": vid,
        "title": pl.select(pl.lit("Video ") + vid).to_series(),
        "genre": genre_names.gather(genre),
        "maker": maker_names.gather(maker),
        "price": price,
        "duration_seconds": duration,
        "product_released_at": released,
    }).with_columns(created_at=released, updated_at=released)
    tags = pl.DataFrame({"video_id": vid.gather(tv_item), "tag_name": tag_names.gather(tv_tag)})
    performers = pl.DataFrame({"video_id": vid.gather(pv_item),
                               "performer_name": perf_names.gather(pv_perf)})
    decisions = pl.DataFrame({
        "user_id": uid.gather(du),
        "video_id": vid.gather(dv),
        "decision_type": pl.Series(np.where(like, "like", "nope")),
        "created_at": created,
    })
    truth = Truth(user_vec, video_vec, price, price_tol, pickiness, spec.like_scale, cold_video)
    return SynthData(profiles, videos, tags, performers, decisions, truth)


def load(conn: psycopg.Connection, data: SynthData, replace: bool = False) -> dict[str, int]:
    """Write the data set into the demo tables in one transaction: all of it or nothing."""
    from twotower.db import require_demo_tables

    require_demo_tables(conn)
    with conn.transaction():
        n = conn.execute("SELECT count(*) FROM videos").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM profiles").fetchone()[0]
        if n and not replace:
            raise InvalidInput("the database already holds data: pass --replace to overwrite it "
                               "(or `twotower db reset --yes`)")
        if n:
            conn.execute("TRUNCATE user_video_decisions, video_tags, video_performers, "
                         "video_embeddings, user_embeddings, videos, profiles")
        conn.execute(sql("bulk_load_pre"))
        counts = {
            "profiles": copy_frame(conn, "profiles", data.profiles),
            "videos": copy_frame(conn, "videos", data.videos),
            "video_tags": copy_frame(conn, "video_tags", data.tags),
            "video_performers": copy_frame(conn, "video_performers", data.performers),
            "user_video_decisions": copy_frame(conn, "user_video_decisions", data.decisions),
        }
        conn.execute(sql("bulk_load_post"))
    for t in counts:
        conn.execute(psycopg.sql.SQL("ANALYZE {}").format(psycopg.sql.Identifier(t)))
    conn.commit()
    return counts
