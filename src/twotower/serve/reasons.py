"""Reasons for a recommendation: the tags and performers a video shares with the user's recent
likes. Every video's labels are held in memory as one row of int codes, and the service
refreshes them in the background. The same joins in SQL cost more database time per request than
the HNSW search itself (docs/benchmarks.md, "Serving"). Per request, a few numpy operations on
(likes x labels) and (candidates x labels) arrays replace them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import polars as pl
import psycopg

from twotower.data.load import read_query

log = logging.getLogger("twotower.serve")
MAX_LABELS = 64  # per video; beyond this (rare) a video's reasons come from its first 64 labels


@dataclass(frozen=True)
class ReasonIndex:
    rows: dict[str, int]  # video_id -> row of `codes`
    codes: np.ndarray  # (videos + 1, width) int32, ascending, padded with len(labels); last row: all padding
    labels: list[str]  # code -> "tag:<name>" | "performer:<name>"; tags first, each kind by name
    n_tags: int

    @property
    def videos(self) -> int:
        return len(self.rows)

    @classmethod
    def load(cls, conn: psycopg.Connection) -> ReasonIndex:
        schema = {"video_id": pl.Utf8, "name": pl.Utf8}
        tags = read_query(conn, "SELECT video_id, tag_name AS name FROM src_video_tags", schema)
        perf = read_query(conn, "SELECT video_id, performer_name AS name FROM src_video_performers", schema)
        return cls.build(tags, perf)

    @classmethod
    def build(cls, tags: pl.DataFrame, performers: pl.DataFrame) -> ReasonIndex:
        """From (video_id, name) frames of tags and performers."""
        tag_names = tags["name"].unique().sort().to_list()
        perf_names = performers["name"].unique().sort().to_list()
        labels = [f"tag:{n}" for n in tag_names] + [f"performer:{n}" for n in perf_names]

        def coded(pairs: pl.DataFrame, names: list[str], first: int) -> pl.DataFrame:
            lookup = pl.DataFrame({"name": names, "code": range(first, first + len(names))},
                                  schema={"name": pl.Utf8, "code": pl.Int32})
            return pairs.join(lookup, on="name").select("video_id", "code")

        both = pl.concat([coded(tags, tag_names, 0), coded(performers, perf_names, len(tag_names))])
        ids = both["video_id"].unique()
        rows = dict(zip(ids.to_list(), range(len(ids)), strict=True))
        # Sort by integers, not strings: at 1M videos this is most of the build time.
        both = both.join(pl.DataFrame({"video_id": ids, "row": pl.int_range(len(ids), eager=True)}), on="video_id") \
            .select("row", "code").unique().sort("row", "code")
        row, code = both["row"].to_numpy(), both["code"].to_numpy()
        slot = np.arange(len(row)) - np.searchsorted(row, row)  # position within its video
        width = int(slot.max() + 1) if len(slot) else 1
        if width > MAX_LABELS:
            log.warning("some videos have %d tags+performers; reasons use their first %d", width, MAX_LABELS)
            keep = slot < MAX_LABELS
            row, code, slot, width = row[keep], code[keep], slot[keep], MAX_LABELS
        codes = np.full((len(ids) + 1, width), len(labels), np.int32)  # padding code = len(labels)
        codes[row, slot] = code
        return cls(rows, codes, labels, len(tag_names))

    @classmethod
    def empty(cls) -> ReasonIndex:
        return cls({}, np.zeros((1, 1), np.int32), [], 0)

    def explain(self, liked: list[str], candidates: list[str], max_tags: int = 3,
                max_performers: int = 2) -> list[list[str]]:
        """For each candidate, up to max_tags shared tags then up to max_performers shared
        performers, each in name order. (Few, whole-array numpy steps: this runs per request.)"""
        out: list[list[str]] = [[] for _ in candidates]
        if not liked or not candidates or not self.rows:
            return out
        ids = liked + candidates  # an unknown video gets the all-padding last row
        rows = np.fromiter(map(self.rows.get, ids, repeat(len(self.rows), len(ids))), np.intp, len(ids))
        codes = self.codes[rows]
        shared = np.zeros(len(self.labels) + 1, bool)
        shared[codes[:len(liked)]] = True
        shared[-1] = False  # padding
        cand = codes[len(liked):]
        hit = shared[cand]
        tags = hit & (cand < self.n_tags)
        keep = tags & (tags.cumsum(1) <= max_tags)
        performers = hit ^ tags
        keep |= performers & (performers.cumsum(1) <= max_performers)
        i, j = keep.nonzero()  # row-major: each candidate's labels stay in code (name) order
        labels = self.labels
        for row, code in zip(i.tolist(), cand[i, j].tolist(), strict=True):
            out[row].append(labels[code])
        return out
