import math

import pytest
import torch

from twotower.model import ModelArgs, TwoTower
from twotower.train import bce_loss, margin_loss, softmax_loss


@pytest.mark.parametrize("kind", ["mlp", "hybrid"])
def test_gradient_flows_through_both_towers(kind):
    torch.manual_seed(0)
    m = TwoTower(ModelArgs(kind=kind, user_dim=7, item_dim=5, n_items=10, embedding_dim=8,
                           hidden_dims=[16], dropout=[0.0], normalize=kind == "mlp"))
    uf, itf = torch.randn(4, 7), torch.randn(4, 5)
    hist = torch.tensor([[0, 1, -1], [2, -1, -1], [3, 4, 5], [-1, -1, -1]])
    idx = torch.tensor([1, 2, -1, 9])  # -1: a cold video goes through the content MLP
    p = m(uf, hist, itf, idx)
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
    bce_loss(m.score(m.user(uf, hist), m.item(itf, idx)), torch.tensor([1.0, 0, 1, 0])).backward()
    user_grads = [q.grad for q in m.user.parameters() if q.grad is not None]
    item_grads = [q.grad for q in m.item.parameters() if q.grad is not None]
    assert any(g.abs().sum() > 0 for g in user_grads) and any(g.abs().sum() > 0 for g in item_grads)
    if kind == "mlp":
        n = m.user(uf, hist).norm(dim=-1)
        assert torch.allclose(n, torch.ones(4), atol=1e-5)  # L2-normalised as in the seed


def test_losses_by_hand():
    s = torch.tensor([2.0, -1.0])
    y = torch.tensor([1.0, 0.0])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert bce_loss(s, y).item() == pytest.approx(expected, rel=1e-6)
    pos = torch.tensor([[0.9], [0.2]])
    neg = torch.tensor([[0.1, 0.5], [0.4, -0.5]])
    # max(0, .5 - .9 + .1)=0, max(0, .5-.9+.5)=.1, max(0, .5-.2+.4)=.7, max(0, .5-.2-.5)=0
    assert margin_loss(pos, neg, 0.5).item() == pytest.approx((0 + 0.1 + 0.7 + 0) / 4)


def test_softmax_loss_with_logq_and_accidental_hits_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    ids = torch.tensor([7, 8, 7])  # rows 0 and 2 are the same video: not negatives of each other
    log_q = torch.log(torch.tensor([0.5, 0.25, 0.5]))
    t = 0.5
    logits = (u @ v.T) / t - log_q[None, :]
    rows = []
    for i in range(3):
        keep = [j for j in range(3) if j == i or ids[j] != ids[i]]
        lse = torch.logsumexp(logits[i, keep], dim=0)
        rows.append(lse - logits[i, i])
    expected = torch.stack(rows).mean()
    got = softmax_loss(u, v, ids, t, log_q)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
