import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import ndcg_score, roc_auc_score

from twotower import metrics


def rel(rows, n_items):
    r, c = zip(*[(u, i) for u, items in enumerate(rows) for i in items], strict=True)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_case():
    top = np.array([[0, 1, 2], [3, 4, 5]])
    relevant = rel([[1, 5], [3]], 6)
    m = metrics.ranking_metrics(top, relevant, [1, 3])
    # user 0: hit at rank 2 only; user 1: hit at rank 1
    assert m["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg@3"] == pytest.approx((ndcg0 + 1.0) / 2)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["hitrate@1"] == pytest.approx(0.5)
    assert m["precision@1"] == pytest.approx(0.5)


def test_users_without_relevant_items_are_skipped():
    top = np.array([[0, 1], [0, 1]])
    m = metrics.ranking_metrics(top, rel([[0], []], 3) if False else sp.csr_matrix(([1.0], ([0], [0])), shape=(2, 3)), [2])
    assert m["hitrate@2"] == 1.0 and m["ndcg@2"] == 1.0


def test_ndcg_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 50, 40, 10
    y = (rng.random((n_users, n_items)) < 0.15).astype(float)
    y[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1  # everyone has a relevant item
    scores = rng.random((n_users, n_items))
    top = metrics.top_k(scores, k)
    ours = metrics.ranking_metrics(top, sp.csr_matrix(y), [k])[f"ndcg@{k}"]
    assert ours == pytest.approx(ndcg_score(y, scores, k=k), abs=1e-9)


def test_auc_matches_sklearn_per_user():
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(20), 15)
    scores = np.round(rng.random(users.size), 2)  # some ties
    labels = rng.random(users.size) < 0.4
    expected = np.mean([roc_auc_score(labels[users == u], scores[users == u]) for u in range(20)
                        if 0 < labels[users == u].sum() < 15])
    perm = rng.permutation(users.size)  # order must not matter
    assert metrics.auc_per_user(users[perm], scores[perm], labels[perm]) == pytest.approx(expected)


def test_top_k_excludes_and_pads():
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    excl = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 3])), shape=(1, 4))
    assert metrics.top_k(scores, 3, excl).tolist() == [[1, 2, -1]]


def test_top_k_breaks_ties_by_index_on_any_cpu():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(50, 300)).astype(np.float32)  # many ties
    scores[0] = 1.0  # a constant row: the first k items
    want = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(metrics.top_k(scores, 20), want)
    assert metrics.top_k(scores, 20)[0].tolist() == list(range(20))
    scores[1, :] = np.nan  # unrankable: -1, never an error
    assert (metrics.top_k(scores, 5)[1] == -1).all()


def test_coverage_diversity_novelty():
    top = np.array([[0, 1], [0, 2]])
    assert metrics.catalog_coverage(top, 4) == 0.75
    tags = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0], [0, 1]]))
    # list 0 has tags {a, b}: entropy 1 bit; list 1 has {a, a}: 0 bits
    assert metrics.diversity(top, tags) == pytest.approx(0.5)
    pop = np.array([3, 0, 1, 0])
    expected = np.mean(-np.log2((pop[[0, 1, 0, 2]] + 1) / 4))
    assert metrics.novelty(top, pop, 3) == pytest.approx(expected)


def test_per_user_metrics_average_to_ranking_metrics():
    rng = np.random.default_rng(3)
    y = (rng.random((30, 25)) < 0.2).astype(float)
    y[:5] = 0  # users without a relevant item are left out of both
    top = metrics.top_k(rng.random((30, 25)), 10)
    per_user = metrics.per_user_metrics(top, sp.csr_matrix(y), [5, 10])
    means = metrics.ranking_metrics(top, sp.csr_matrix(y), [5, 10])
    assert set(per_user) == set(means)
    assert all(v.shape == (int((y.sum(axis=1) > 0).sum()),) for v in per_user.values())
    assert all(per_user[k].mean() == pytest.approx(means[k]) for k in means)


def test_paired_ratio_ci_covers_the_ratio_and_shrinks_with_users():
    rng = np.random.default_rng(4)
    base = rng.random(2000)
    better = base * 1.10 + rng.normal(0, 0.05, base.size)  # 10% better, user by user
    small = metrics.paired_ratio_ci(better[:100], base[:100], seed=1)
    large = metrics.paired_ratio_ci(better, base, seed=1)
    assert small.low < small.ratio < small.high and large.low < large.ratio < large.high
    assert large.ratio == pytest.approx(better.mean() / base.mean())
    assert large.low > 1.05 and large.high < 1.15  # 2000 users tell 10% apart
    assert large.high - large.low < small.high - small.low
    assert metrics.paired_ratio_ci(better, base, seed=1) == large  # seeded: the same interval
    same = metrics.paired_ratio_ci(base, base)
    assert same.ratio == same.low == same.high == pytest.approx(1.0)  # paired: no noise against itself
    assert "95% CI" in str(large)


def test_paired_ratio_ci_rejects_unpaired_arrays_and_a_zero_reference():
    with pytest.raises(ValueError, match="one length"):
        metrics.paired_ratio_ci(np.ones(3), np.ones(4))
    assert np.isnan(metrics.paired_ratio_ci(np.ones(3), np.zeros(3)).ratio)
