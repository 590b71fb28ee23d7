import pytest

from tests.helpers import exported, load_world
from twotower import embed, registry
from twotower.config import EmbeddingConfig
from twotower.errors import InvalidInput, NotFound
from twotower.export import load_artifacts


@pytest.fixture
def two_versions(conn, settings, tmp_path):
    load_world(conn)
    out = []
    for v in ("a", "b"):
        folder = exported(conn, settings, tmp_path / v, v)
        registry.register(conn, folder, settings.path("artifacts"))
        out.append(v)
    return out


def test_activation_needs_embeddings_then_switches_atomically(conn, settings, two_versions):
    with pytest.raises(InvalidInput, match="no video embeddings"):
        registry.activate(conn, "a")
    for v in two_versions:
        embed.embed_videos(conn, load_artifacts(settings.path("artifacts") / v), EmbeddingConfig())
    registry.activate(conn, "a")
    registry.activate(conn, "b")
    rows = {v.version: v for v in registry.list_versions(conn)}
    assert rows["b"].is_default and rows["b"].traffic_share == 1 and not rows["a"].is_active
    assert registry.rollback(conn).version == "a"
    rows = {v.version: v for v in registry.list_versions(conn)}
    assert rows["a"].is_default and not rows["b"].is_default
    assert sum(v.is_default for v in rows.values()) == 1


def test_traffic_shares(conn, settings, two_versions):
    for v in two_versions:
        embed.embed_videos(conn, load_artifacts(settings.path("artifacts") / v), EmbeddingConfig())
    registry.activate(conn, "a")
    act = registry.set_traffic(conn, {"a": 0.8, "b": 0.2})
    assert {v.version: v.traffic_share for v in act} == {"a": 0.8, "b": 0.2}
    assert [v.version for v in act if v.is_default] == ["a"]
    with pytest.raises(InvalidInput, match="sum to 1"):
        registry.set_traffic(conn, {"a": 0.5, "b": 0.4})
    with pytest.raises(NotFound):
        registry.set_traffic(conn, {"a": 0.5, "zzz": 0.5})
    with pytest.raises(InvalidInput, match="VERSION=SHARE"):
        registry.parse_shares(["a:1"])
    # a refused change leaves the previous split in place
    assert {v.version: v.traffic_share for v in registry.active_versions(conn)} == {"a": 0.8, "b": 0.2}


def test_register_twice_and_unknown(conn, settings, two_versions):
    with pytest.raises(InvalidInput, match="already registered"):
        registry.register(conn, settings.path("artifacts") / "a", settings.path("artifacts"))
    with pytest.raises(NotFound, match="not registered"):
        registry.activate(conn, "nope")
