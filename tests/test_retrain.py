from tests.helpers import SMALL_MODEL, load_world
from twotower import registry
from twotower.config import load_config
from twotower.retrain import retrain

HYBRID = SMALL_MODEL + ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false", "training.epochs=0"]


def test_retrain_activates_only_when_not_worse(conn, settings):
    load_world(conn)
    first = retrain(settings, load_config(None, HYBRID), quiet=True)
    assert first.activated and first.active is None
    default = [v for v in registry.list_versions(conn) if v.is_default]
    assert [v.version for v in default] == [first.candidate]
    assert conn.execute("SELECT count(*) FROM user_embeddings WHERE model_version=%s",
                        (first.candidate,)).fetchone()[0] > 0
    # a much weaker candidate (one epoch of a tiny content-only MLP) is refused
    weak = retrain(settings, load_config(None, SMALL_MODEL + ["training.epochs=1", "model.embedding_dim=4"]), quiet=True)
    assert not weak.activated and "keeping" in weak.reason and weak.active_ndcg > weak.candidate_ndcg
    assert [v.version for v in registry.list_versions(conn) if v.is_default] == [first.candidate]
