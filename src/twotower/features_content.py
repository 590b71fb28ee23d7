"""The seed's optional item inputs (seed 000 ItemTower): genre and maker one-hots and TF-IDF of
title + description. Each is a block of the item feature vector, so the item tower's first
`Linear` layer is the embedding (a one-hot times a weight matrix is a lookup) and the text
block's dense layer (`text_dense`). Off unless `artifacts.item_inputs` names them: they are kept
only where the benchmark says they help (docs/benchmarks.md, bench/item_inputs.py).

Tokens, the same in bulk (item_matrix) and for one video (the JSON of
get_item_embedding_features): lower-cased runs of two or more letters/digits; Chinese/Japanese
script (no spaces between words) as overlapping character bigrams, plus a lone character.
TF-IDF: (1 + ln tf) * idf, idf = ln((1 + N) / (1 + df)) + 1 over the videos of the training
window (scikit-learn's smooth, sublinear form), rows L2-normalised.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import scipy.sparse as sp

ITEM_INPUTS = ("genre", "maker", "text")
_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}ー々]+"
_WORD = r"[^\W_\p{Han}\p{Hiragana}\p{Katakana}ー々]{2,}"


def tokens(frame: pl.DataFrame) -> pl.DataFrame:
    """(_i, text) -> (_i, term), one row per occurrence."""
    low = frame.select("_i", pl.col("text").fill_null("").str.to_lowercase())
    words = low.select("_i", pl.col("text").str.extract_all(_WORD).alias("term")).explode("term")
    runs = low.select("_i", pl.col("text").str.extract_all(_CJK).alias("run")).explode("run").drop_nulls()
    grams = pl.concat([
        runs.select("_i", pl.col("run").str.extract_all("..").alias("term")),
        runs.select("_i", pl.col("run").str.slice(1).str.extract_all("..").alias("term")),
        runs.filter(pl.col("run").str.len_chars() == 1).select("_i", pl.concat_list("run").alias("term")),
    ]).explode("term")
    return pl.concat([words, grams]).drop_nulls().select("_i", pl.col("term").cast(pl.Utf8))


def item_text(videos: pl.DataFrame) -> pl.Expr:
    """Title and description as one string (either may be missing)."""
    cols = [c for c in ("title", "description") if c in videos.columns]
    return pl.concat_str([pl.col(c).fill_null("") for c in cols], separator=" ") if cols else pl.lit("")


def fit_text(videos: pl.DataFrame, max_vocab: int, min_freq: int) -> tuple[list[str], list[float]]:
    """Vocabulary (by document frequency, ties by term) and idf over `videos`."""
    docs = videos.select(pl.int_range(pl.len()).alias("_i"), item_text(videos).alias("text"))
    df = tokens(docs).unique().group_by("term").len("df")
    df = df.filter(pl.col("df") >= min_freq).sort(["df", "term"], descending=[True, False]).head(max_vocab)
    n = videos.height
    idf = [math.log((1 + n) / (1 + d)) + 1.0 for d in df["df"].to_list()]
    return df["term"].to_list(), idf


def text_matrix(docs: pl.DataFrame, vocab: list[str], idf: list[float], n_rows: int) -> sp.csr_matrix:
    """(_i, text) -> (n_rows, len(vocab)) L2-normalised TF-IDF."""
    if not vocab:
        return sp.csr_matrix((n_rows, 0))
    voc = pl.DataFrame({"term": vocab, "_t": np.arange(len(vocab), dtype=np.int64),
                        "idf": np.asarray(idf, dtype=np.float64)})
    j = tokens(docs).group_by("_i", "term").len("tf").join(voc, on="term")
    w = (1.0 + np.log(j["tf"].to_numpy().astype(np.float64))) * j["idf"].to_numpy()
    m = sp.csr_matrix((w, (j["_i"].to_numpy(), j["_t"].to_numpy())), shape=(n_rows, len(vocab)))
    return l2_rows(m)


def one_hot(values: pl.Series, vocab: list[str]) -> sp.csr_matrix:
    """One column per vocabulary term; a value outside it (or missing) is an all-zero row."""
    n = values.len()
    if not vocab:
        return sp.csr_matrix((n, 0))
    idx = {t: k for k, t in enumerate(vocab)}
    col = values.replace_strict(idx, default=-1, return_dtype=pl.Int64).to_numpy()
    rows = np.flatnonzero(col >= 0)
    return sp.csr_matrix((np.ones(rows.size), (rows, col[rows])), shape=(n, len(vocab)))


def l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.tocsr().astype(np.float64)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)
