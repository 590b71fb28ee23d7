import psycopg
import pytest

from tests.conftest import count
from twotower import db
from twotower.config import Settings
from twotower.errors import StoreUnavailable


def test_migrations_are_idempotent(conn):
    assert db.migrate(conn, demo_tables=True, roles=True) == []  # the template already applied them
    versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == [v for v, _, _ in db.migrations()]


def test_schema_tables_and_checks(conn, settings):
    st = db.status(conn, settings)
    assert st.pgvector and st.pgvector >= "0.8"
    assert set(db.SOURCE_VIEWS) <= set(st.counts) and set(db.OWN_TABLES) <= set(st.counts)
    assert not st.pending
    conn.execute("INSERT INTO profiles (user_id) VALUES ('u')")
    conn.execute("INSERT INTO videos (id) VALUES ('v')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO user_video_decisions (user_id, video_id, decision_type) VALUES ('u','v','meh')")
    conn.rollback()


def test_embeddings_of_different_dimensions_coexist(conn):
    conn.execute("INSERT INTO videos (id) VALUES ('a')")
    conn.execute("INSERT INTO video_embeddings (model_version, video_id, embedding) VALUES "
                 "('m64', 'a', array_fill(0.1, ARRAY[64])::vector), ('m256', 'a', array_fill(0.1, ARRAY[256])::vector)")
    dims = conn.execute("SELECT model_version, vector_dims(embedding) FROM video_embeddings ORDER BY 1").fetchall()
    assert dims == [("m256", 256), ("m64", 64)]


def test_reset_drops_data(conn):
    conn.execute("INSERT INTO videos (id) VALUES ('v')")
    conn.commit()
    db.reset(conn)
    db.migrate(conn, demo_tables=True, roles=True)
    assert count(conn, "videos") == 0


def test_unreachable_database_is_one_clear_error():
    s = Settings(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        db.connect(s)


def test_ensure_schema_says_run_init(admin_url):
    with db.connection(url=admin_url) as c:  # the maintenance db has no schema
        with pytest.raises(StoreUnavailable, match="db init"):
            db.ensure_schema(c)


def test_database_url_points_to_a_second_server(tmp_path, monkeypatch):
    """DATABASE_URL wins over the embedded default: a second pgserver instance is used."""
    other = Settings(TWOTOWER_HOME=tmp_path / "other", DATABASE_URL=None)
    url = db.database_url(other)
    try:
        with db.connection(url=url) as c:
            db.migrate(c, demo_tables=True, roles=True)
            c.execute("INSERT INTO videos (id) VALUES ('only-here')")
            c.commit()
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("TWOTOWER_HOME", str(tmp_path / "unused"))
        s = Settings()
        assert s.database_url == url
        with db.connection(s) as c:
            assert c.execute("SELECT id FROM videos").fetchall() == [("only-here",)]
        assert not (tmp_path / "unused" / "pgdata").exists()
    finally:
        db.stop_embedded(other)


def test_init_says_what_is_wrong_and_what_to_do(admin_url):
    """A role that may not create the extension or a schema, and pgvector outside the search
    path: each is one line that names the fix, not `run twotower db init` again."""
    import uuid

    name = "t_init_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'plain_user'").fetchone():
            c.execute("CREATE ROLE plain_user LOGIN")
    su = admin_url.replace("/postgres?", f"/{name}?")
    plain = su.replace("postgres:@", "plain_user:@")
    try:
        with db.connection(url=plain) as c, pytest.raises(StoreUnavailable, match="Database -> Extensions"):
            db.migrate(c)
        with psycopg.connect(su, autocommit=True) as c:
            c.execute("CREATE SCHEMA vecs; CREATE EXTENSION vector SCHEMA vecs")
        with db.connection(url=plain) as c, pytest.raises(StoreUnavailable, match="ALTER EXTENSION vector SET SCHEMA"):
            db.migrate(c)
        with psycopg.connect(su, autocommit=True) as c:
            c.execute("ALTER EXTENSION vector SET SCHEMA public")
        with db.connection(url=plain) as c, pytest.raises(StoreUnavailable, match="GRANT CREATE ON DATABASE"):
            db.migrate(c)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
