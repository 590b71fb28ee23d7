import numpy as np

from tests.conftest import count
from tests.helpers import exported, load_world
from twotower import embed
from twotower.config import EmbeddingConfig
from twotower.export import load_artifacts


def test_embed_writes_one_row_per_video_and_an_index_that_agrees_with_exact(conn, settings, tmp_path):
    f = load_world(conn)
    art = load_artifacts(exported(conn, settings, tmp_path))
    r = embed.embed_videos(conn, art, EmbeddingConfig())
    assert r.rows == f.videos.height == count(conn, "video_embeddings")
    assert conn.execute("SELECT count(DISTINCT video_id) FROM video_embeddings WHERE model_version='v1'").fetchone()[0] == r.rows
    idx = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (embed.index_name("v1"),)).fetchone()
    assert idx and "hnsw" in idx[0]
    embed.embed_videos(conn, art, EmbeddingConfig())  # re-embedding replaces, never duplicates
    assert count(conn, "video_embeddings") == f.videos.height
    assert r.parquet.exists()
    # HNSW top-k against the exact twin over the same vectors
    import pyarrow.parquet as pq

    t = pq.read_table(r.parquet)
    ids = np.array(t["video_id"].to_pylist())
    vecs = np.stack(t["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    rng = np.random.default_rng(0)
    recalls = []
    for _ in range(20):
        q = rng.normal(size=art.dim).astype(np.float32)
        exact = set(ids[np.argsort(-(vecs @ q))[:10]])
        got = {v for v, _ in embed.search(conn, "v1", art.dim, q, 10, ef_search=100)}
        recalls.append(len(exact & got) / 10)
    assert np.mean(recalls) >= 0.95


def test_user_embeddings_bulk_and_online_agree(conn, settings, tmp_path):
    load_world(conn)
    art = load_artifacts(exported(conn, settings, tmp_path))
    r = embed.embed_all_users(conn, art)
    assert r.rows == count(conn, "user_embeddings") > 0
    users = [u for (u,) in conn.execute("SELECT user_id FROM user_embeddings ORDER BY user_id LIMIT 10")]
    stored = {u: e.to_numpy() for u, e in conn.execute(
        "SELECT user_id, embedding FROM user_embeddings WHERE user_id = ANY(%s)", (users,))}
    online, _ = embed.user_vectors_online(conn, art, users)
    for k, u in enumerate(users):
        np.testing.assert_allclose(online[k], stored[u], atol=1e-4)


def test_search_excludes_decided_videos_even_when_most_top_ones_are_decided(conn, settings, tmp_path):
    load_world(conn)
    art = load_artifacts(exported(conn, settings, tmp_path))
    embed.embed_videos(conn, art, EmbeddingConfig())
    q = np.ones(art.dim, dtype=np.float32)
    top = [v for v, _ in embed.search(conn, "v1", art.dim, q, 300)]
    conn.execute("INSERT INTO profiles (user_id) VALUES ('greedy')")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES ('greedy', %s, 'nope')",
                        [(v,) for v in top[:250]])
    got = [v for v, _ in embed.search(conn, "v1", art.dim, q, 20, user_id="greedy", ef_search=40)]
    assert len(got) == 20 and not set(got) & set(top[:250])
