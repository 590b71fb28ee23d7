"""Feature pipeline (seed 003 §3): vocabularies, standard scaling, user and item vectors.

User vector: [8 standardised numerics] + [average like hour / 23] + [tag BOW of liked videos, L2]
             + [performer BOW of liked videos, L2]
Item vector: [3 standardised numerics: price, recency_days, duration_seconds] + [tag BOW, L2]
             + [performer BOW, L2] + the optional seed inputs `artifacts.item_inputs` names
             (genre one-hot, maker one-hot, TF-IDF of title + description: features_content.py)

Missing values, explicitly: a missing numeric (no price, no release date, a user with no likes
so no mean price or last like) takes the training mean, i.e. 0 after scaling; like_ratio is 0.5
with no decisions; the like hour is 0.5 with no likes; an empty bag is all zeros.

Fitted on the training window only, serialisable (to_dict/from_dict: goes into checkpoints and
the export), vectorised with polars group-bys and scipy sparse matrices. The same vectors are
rebuilt from the JSON of the SQL functions get_user_embedding_features /
get_item_embedding_features (seed "RPC mode"), which serving uses.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from twotower.features_content import (
    ITEM_INPUTS,
    fit_text,
    item_text,
    l2_rows,
    one_hot,
    text_matrix,
)

USER_NUMERIC = ["account_age_days", "mean_price", "median_price", "like_count", "nope_count",
                "decision_count", "like_ratio", "recent_like_days"]
ITEM_NUMERIC = ["price", "recency_days", "duration_seconds"]
DAY_US = 86_400 * 1_000_000


@dataclass
class Scaler:
    """StandardScaler parameters; a missing value is replaced by the mean (-> 0)."""

    names: list[str]
    mean: list[float]
    scale: list[float]

    @classmethod
    def fit(cls, names: list[str], x: np.ndarray) -> Scaler:
        with warnings.catch_warnings():  # an all-missing column (no prices at all) is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, axis=0) if x.size else np.zeros(len(names))
            std = np.nanstd(x, axis=0) if x.size else np.ones(len(names))
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.where(np.isnan(std) | (std < 1e-12), 1.0, std)
        return cls(names, mean.tolist(), std.tolist())

    def transform(self, x: np.ndarray) -> np.ndarray:
        m, s = np.asarray(self.mean), np.asarray(self.scale)
        x = np.where(np.isnan(x), m, x)
        return ((x - m) / s).astype(np.float32)


def _vocab(counts: pl.DataFrame, max_size: int, min_freq: int) -> list[str]:
    """Most frequent terms first (ties by name), at least min_freq, at most max_size."""
    return (counts.filter(pl.col("n") >= min_freq).sort(["n", "term"], descending=[True, False])
            .head(max_size)["term"].to_list())


def _col(v: pl.DataFrame, name: str) -> pl.Series:
    return v[name] if name in v.columns else pl.Series(name, [None] * v.height, dtype=pl.Utf8)


def _days(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    return (later - earlier).dt.total_microseconds().cast(pl.Float64) / DAY_US


@dataclass
class FeaturePipeline:
    tag_vocab: list[str]
    performer_vocab: list[str]
    item_scaler: Scaler
    user_scaler: Scaler
    release_reference: str  # ISO time: recency_days = reference - product_released_at
    reference_time: str  # ISO time: end of the training window (as_of for training features)
    max_history: int = 200
    # Optional item inputs (empty = off; a checkpoint from before they existed loads as off).
    genre_vocab: list[str] = field(default_factory=list)
    maker_vocab: list[str] = field(default_factory=list)
    text_vocab: list[str] = field(default_factory=list)
    text_idf: list[float] = field(default_factory=list)
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ shapes and schema
    @property
    def n_tags(self) -> int:
        return len(self.tag_vocab)

    @property
    def n_performers(self) -> int:
        return len(self.performer_vocab)

    @property
    def user_feature_dim(self) -> int:
        return len(USER_NUMERIC) + 1 + self.n_tags + self.n_performers

    @property
    def item_feature_dim(self) -> int:
        return (len(ITEM_NUMERIC) + self.n_tags + self.n_performers + len(self.genre_vocab)
                + len(self.maker_vocab) + len(self.text_vocab))

    def schema(self) -> dict[str, Any]:
        """Machine-readable layout: enough to rebuild the vectors in another language."""
        def blocks(parts):
            out, off = [], 0
            for name, length, kind, extra in parts:
                if length == 0 and name in ("genre", "maker", "text"):
                    continue  # an optional input that is off
                out.append({"name": name, "offset": off, "length": length, "kind": kind, **extra})
                off += length
            return out, off

        u_blocks, u_dim = blocks([
            ("user_numeric", len(USER_NUMERIC), "standardised",
             {"features": USER_NUMERIC, "mean": self.user_scaler.mean, "scale": self.user_scaler.scale,
              "missing": "training mean (0 after scaling); like_ratio 0.5 with no decisions"}),
            ("average_like_hour", 1, "hour/23", {"missing": 0.5, "timezone": "UTC"}),
            ("liked_tags", self.n_tags, "bag_of_words_l2", {"vocab": "vocab_tag.json"}),
            ("liked_performers", self.n_performers, "bag_of_words_l2", {"vocab": "vocab_actress.json"}),
        ])
        i_blocks, i_dim = blocks([
            ("item_numeric", len(ITEM_NUMERIC), "standardised",
             {"features": ITEM_NUMERIC, "mean": self.item_scaler.mean, "scale": self.item_scaler.scale,
              "missing": "training mean (0 after scaling)"}),
            ("tags", self.n_tags, "bag_of_words_l2", {"vocab": "vocab_tag.json"}),
            ("performers", self.n_performers, "bag_of_words_l2", {"vocab": "vocab_actress.json"}),
            ("genre", len(self.genre_vocab), "one_hot", {"vocab": self.genre_vocab}),
            ("maker", len(self.maker_vocab), "one_hot", {"vocab": self.maker_vocab}),
            ("text", len(self.text_vocab), "tfidf_l2",
             {"vocab": self.text_vocab, "idf": self.text_idf, "source": "title + ' ' + description",
              "tokens": "lower-cased runs of >= 2 letters/digits; CJK runs as character bigrams",
              "tf": "1 + ln(count)"}),
        ])
        return {"user": {"dim": u_dim, "blocks": u_blocks}, "item": {"dim": i_dim, "blocks": i_blocks},
                "release_reference": self.release_reference, "reference_time": self.reference_time,
                "max_history": self.max_history}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_index")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeaturePipeline:
        d = dict(d)
        d["item_scaler"] = Scaler(**d["item_scaler"])
        d["user_scaler"] = Scaler(**d["user_scaler"])
        return cls(**d)

    def _vocab_frame(self, kind: str, col: str) -> pl.DataFrame:
        terms = self.tag_vocab if kind == "tag" else self.performer_vocab
        return pl.DataFrame({col: terms, "_t": np.arange(len(terms), dtype=np.int64)},
                            schema={col: pl.Utf8, "_t": pl.Int64})

    def _term_index(self, kind: str) -> dict[str, int]:
        if kind not in self._index:
            vocab = self.tag_vocab if kind == "tag" else self.performer_vocab
            self._index[kind] = {t: j for j, t in enumerate(vocab)}
        return self._index[kind]

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, videos: pl.DataFrame, tags: pl.DataFrame, performers: pl.DataFrame,
            profiles: pl.DataFrame, decisions: pl.DataFrame, *, max_tag_vocab: int = 512,
            min_tag_freq: int = 3, max_actress_vocab: int = 256, min_actress_freq: int = 2,
            max_history: int = 200, item_inputs: tuple[str, ...] | list[str] = (),
            max_genre_vocab: int = 64, max_maker_vocab: int = 256, min_maker_freq: int = 2,
            max_text_vocab: int = 2000, min_text_freq: int = 2) -> FeaturePipeline:
        """Fit vocabularies and scalers. `decisions` is the training window only."""
        unknown = sorted(set(item_inputs) - set(ITEM_INPUTS))
        if unknown:
            raise ValueError(f"artifacts.item_inputs: unknown {unknown}; choose from {list(ITEM_INPUTS)}")
        tag_vocab = _vocab(tags.group_by(pl.col("tag_name").alias("term")).len("n"),
                           max_tag_vocab, min_tag_freq)
        perf_vocab = _vocab(performers.group_by(pl.col("performer_name").alias("term")).len("n"),
                            max_actress_vocab, min_actress_freq)
        rel = videos["product_released_at"].drop_nulls()
        release_ref = rel.max() if rel.len() else datetime(2000, 1, 1, tzinfo=UTC)
        ref = decisions["created_at"].max() if decisions.height else datetime.now(UTC)
        raw_items = _item_raw(videos, release_ref)
        item_scaler = Scaler.fit(ITEM_NUMERIC, raw_items)
        stub = cls(tag_vocab, perf_vocab, item_scaler, Scaler(USER_NUMERIC, [0.0] * 8, [1.0] * 8),
                   release_ref.isoformat(), ref.isoformat(), max_history)
        if "genre" in item_inputs:
            stub.genre_vocab = _vocab(videos.group_by(pl.col("genre").alias("term")).len("n")
                                      .drop_nulls("term"), max_genre_vocab, 1)
        if "maker" in item_inputs:
            stub.maker_vocab = _vocab(videos.group_by(pl.col("maker").alias("term")).len("n")
                                      .drop_nulls("term"), max_maker_vocab, min_maker_freq)
        if "text" in item_inputs:
            stub.text_vocab, stub.text_idf = fit_text(videos, max_text_vocab, min_text_freq)
        users = pl.concat([profiles.select("user_id"), decisions.select("user_id")]).unique()
        raw_users, _ = stub._user_raw(users["user_id"], profiles, decisions, videos, ref)
        active = np.asarray(raw_users[:, USER_NUMERIC.index("decision_count")] > 0)
        stub.user_scaler = Scaler.fit(USER_NUMERIC, raw_users[active] if active.any() else raw_users)
        return stub

    # ------------------------------------------------------------------ items
    def item_matrix(self, item_ids: np.ndarray, videos: pl.DataFrame, tags: pl.DataFrame,
                    performers: pl.DataFrame) -> sp.csr_matrix:
        """(len(item_ids), item_feature_dim) CSR, rows in the order of item_ids."""
        order = pl.DataFrame({"id": item_ids, "_i": np.arange(len(item_ids))})
        v = order.join(videos, on="id", how="left").sort("_i")
        raw = _item_raw(v, datetime.fromisoformat(self.release_reference))
        num = sp.csr_matrix(self.item_scaler.transform(raw))
        tag_bow = self._bag(order.rename({"id": "video_id"}), tags, "tag_name", "tag")
        perf_bow = self._bag(order.rename({"id": "video_id"}), performers, "performer_name", "performer")
        docs = v.select(pl.col("_i"), item_text(v).alias("text"))
        return sp.hstack([num, l2_rows(tag_bow), l2_rows(perf_bow),
                          one_hot(_col(v, "genre"), self.genre_vocab), one_hot(_col(v, "maker"), self.maker_vocab),
                          text_matrix(docs, self.text_vocab, self.text_idf, len(item_ids))],
                         format="csr", dtype=np.float32)

    def _bag(self, order: pl.DataFrame, terms: pl.DataFrame, col: str, kind: str) -> sp.csr_matrix:
        n_terms = self.n_tags if kind == "tag" else self.n_performers
        vocab = self._vocab_frame(kind, col)
        j = order.join(terms.unique([ "video_id", col]), on="video_id").join(vocab, on=col)
        return sp.csr_matrix((np.ones(j.height), (j["_i"].to_numpy(), j["_t"].to_numpy())),
                             shape=(order.height, n_terms))

    def item_vector_from_json(self, j: dict[str, Any]) -> np.ndarray:
        """One item vector from get_item_embedding_features JSON (same as item_matrix)."""
        ref = datetime.fromisoformat(self.release_reference)
        rel = _parse_ts(j.get("product_released_at"))
        raw = np.array([[_num(j.get("price")),
                         (ref - rel).total_seconds() / 86400 if rel else np.nan,
                         _num(j.get("duration_seconds"))]])
        num = self.item_scaler.transform(raw)[0]
        one = pl.DataFrame({"_i": [0], "title": [j.get("title")], "description": [j.get("description")],
                            "genre": [j.get("genre")], "maker": [j.get("maker")]},
                           schema={"_i": pl.Int64, "title": pl.Utf8, "description": pl.Utf8,
                                   "genre": pl.Utf8, "maker": pl.Utf8})
        extra = sp.hstack([one_hot(one["genre"], self.genre_vocab), one_hot(one["maker"], self.maker_vocab),
                           text_matrix(one.select("_i", item_text(one).alias("text")), self.text_vocab,
                                       self.text_idf, 1)], format="csr").toarray()[0]
        return np.concatenate([num, self._bow_from_list(j.get("tags") or [], "tag"),
                               self._bow_from_list(j.get("performers") or [], "performer"), extra]).astype(np.float32)

    def _bow_from_list(self, terms, kind: str) -> np.ndarray:
        idx = self._term_index(kind)
        v = np.zeros(len(idx))
        counts = terms.items() if isinstance(terms, dict) else ((t, 1) for t in set(terms))
        for t, c in counts:  # a handful of terms per item/user
            if t in idx:
                v[idx[t]] += c
        n = np.linalg.norm(v)
        return v / n if n > 0 else v

    # ------------------------------------------------------------------ users
    def _user_raw(self, user_ids: pl.Series, profiles: pl.DataFrame, decisions: pl.DataFrame,
                  videos: pl.DataFrame, as_of: datetime) -> tuple[np.ndarray, np.ndarray]:
        """(n, 8) raw numerics and (n,) like hour, rows in the order of user_ids."""
        order = pl.DataFrame({"user_id": user_ids, "_u": np.arange(len(user_ids))})
        d = decisions.filter(pl.col("created_at") < as_of).join(
            videos.select(pl.col("id").alias("video_id"), "price"), on="video_id", how="left")
        like = pl.col("decision_type") == "like"
        agg = d.group_by("user_id").agg(
            like.sum().alias("like_count"), (~like).sum().alias("nope_count"),
            pl.len().alias("decision_count"),
            pl.col("price").filter(like).mean().alias("mean_price"),
            pl.col("price").filter(like).median().alias("median_price"),
            pl.col("created_at").filter(like).max().alias("last_like"),
            pl.col("created_at").filter(like).dt.hour().mean().alias("hour"),
        )
        t = (order.join(agg, on="user_id", how="left")
             .join(profiles.select("user_id", pl.col("created_at").alias("joined")), on="user_id", how="left")
             .sort("_u"))
        as_of_lit = pl.lit(as_of).cast(pl.Datetime("us", "UTC"))
        t = t.with_columns(
            pl.col("like_count", "nope_count", "decision_count").fill_null(0).cast(pl.Float64),
            _days(as_of_lit, pl.col("joined")).alias("account_age_days"),
            _days(as_of_lit, pl.col("last_like")).alias("recent_like_days"),
        ).with_columns(
            pl.when(pl.col("decision_count") > 0).then(pl.col("like_count") / pl.col("decision_count"))
            .otherwise(0.5).alias("like_ratio"))
        raw = t.select([pl.col(c).cast(pl.Float64) for c in USER_NUMERIC]).to_numpy()
        hour = t["hour"].fill_null(23 * 0.5).to_numpy().astype(np.float64) / 23.0
        return raw.astype(np.float64), hour

    def user_matrix(self, user_ids: np.ndarray, profiles: pl.DataFrame, decisions: pl.DataFrame,
                    videos: pl.DataFrame, tags: pl.DataFrame, performers: pl.DataFrame,
                    as_of: datetime | None = None) -> sp.csr_matrix:
        """(len(user_ids), user_feature_dim) CSR from decisions strictly before `as_of`."""
        as_of = as_of or datetime.fromisoformat(self.reference_time)
        raw, hour = self._user_raw(pl.Series(user_ids), profiles, decisions, videos, as_of)
        num = sp.csr_matrix(np.column_stack([self.user_scaler.transform(raw), hour]).astype(np.float32))
        likes = decisions.filter((pl.col("created_at") < as_of) & (pl.col("decision_type") == "like"))
        order = pl.DataFrame({"user_id": user_ids, "_u": np.arange(len(user_ids))})
        lk = likes.select("user_id", "video_id").join(order, on="user_id")
        bows = []
        for terms, col, kind in ((tags, "tag_name", "tag"), (performers, "performer_name", "performer")):
            n_terms = self.n_tags if kind == "tag" else self.n_performers
            vocab = self._vocab_frame(kind, col)
            j = lk.join(terms.unique(["video_id", col]), on="video_id").join(vocab, on=col)
            c = j.group_by("_u", "_t").len()
            m = sp.csr_matrix((c["len"].to_numpy().astype(np.float64),
                               (c["_u"].to_numpy(), c["_t"].to_numpy())), shape=(len(user_ids), n_terms))
            bows.append(l2_rows(m))
        return sp.hstack([num, *bows], format="csr", dtype=np.float32)

    def user_vector_from_json(self, j: dict[str, Any], as_of: datetime | None = None) -> np.ndarray:
        """One user vector from get_user_embedding_features JSON (same as user_matrix)."""
        as_of = as_of or _parse_ts(j.get("as_of")) or datetime.fromisoformat(self.reference_time)
        n_like, n_nope = float(j.get("like_count") or 0), float(j.get("nope_count") or 0)
        n = n_like + n_nope
        joined, last = _parse_ts(j.get("created_at")), _parse_ts(j.get("last_like_at"))
        raw = np.array([[
            (as_of - joined).total_seconds() / 86400 if joined else np.nan,
            _num(j.get("mean_price")), _num(j.get("median_price")), n_like, n_nope, n,
            n_like / n if n > 0 else 0.5,
            (as_of - last).total_seconds() / 86400 if last else np.nan,
        ]])
        hour = _num(j.get("avg_like_hour"))
        hour = 0.5 if math.isnan(hour) else hour / 23.0
        return np.concatenate([self.user_scaler.transform(raw)[0], [hour],
                               self._bow_from_list(j.get("liked_tags") or {}, "tag"),
                               self._bow_from_list(j.get("liked_performers") or {}, "performer")]
                              ).astype(np.float32)


def _item_raw(v: pl.DataFrame, release_ref: datetime) -> np.ndarray:
    ref = pl.lit(release_ref).cast(pl.Datetime("us", "UTC"))
    return v.select(
        pl.col("price").cast(pl.Float64),
        _days(ref, pl.col("product_released_at")).alias("recency_days"),
        pl.col("duration_seconds").cast(pl.Float64),
    ).to_numpy().astype(np.float64)


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _parse_ts(x: Any) -> datetime | None:
    if x is None:
        return None
    if isinstance(x, datetime):
        return x if x.tzinfo else x.replace(tzinfo=UTC)
    t = datetime.fromisoformat(str(x).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)
