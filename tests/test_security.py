"""Row level security and grants, tested the way Supabase's pgTAP RLS tests do it: in a
transaction, `SET LOCAL ROLE anon | authenticated | service_role` with `request.jwt.claims` set as
PostgREST sets them, then what is visible, allowed and refused. Each guard is also shown to be
what stops the leak: undo it inside the transaction and the leak appears."""

import contextlib
import json

import psycopg
import pytest
from psycopg import errors

from tests.helpers import load_world
from tests.test_serve import setup_model, warm_user
from twotower import db

OWN = db.OWN_TABLES + db.SOURCE_VIEWS + ("schema_migrations", "installed")


@pytest.fixture
def world(conn, settings, tmp_path):
    load_world(conn)
    setup_model(conn, settings, tmp_path)
    u = warm_user(conn)
    other = conn.execute("SELECT user_id FROM user_embeddings WHERE user_id <> %s LIMIT 1", (u,)).fetchone()[0]
    conn.execute("INSERT INTO recommendation_log (user_id, source, video_ids) VALUES (%s, 'two_tower', '{a}'), "
                 "(%s, 'two_tower', '{b}')", (u, other))
    return conn, u, other


@contextlib.contextmanager
def acting(conn: psycopg.Connection, role: str, sub: str | None = None):
    """One request as PostgREST runs it: a transaction, the role, the JWT's claims."""
    claims = {"role": role, **({"sub": sub} if sub else {})}
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        conn.execute(psycopg.sql.SQL("SET LOCAL ROLE {}").format(psycopg.sql.Identifier(role)))
        yield conn


def refused(conn: psycopg.Connection, query: str, params=()) -> bool:
    try:
        with conn.transaction():
            conn.execute(query, params).fetchall()
        return False
    except errors.InsufficientPrivilege:
        return True


def test_every_table_has_rls_and_anon_gets_nothing(world):
    conn, u, _ = world
    rls = dict(conn.execute("SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON "
                            "n.oid = c.relnamespace WHERE n.nspname = 'twotower' AND c.relkind = 'r'").fetchall())
    assert rls and all(rls.values()), rls
    with acting(conn, "anon") as c:
        for t in OWN:
            assert refused(c, f"SELECT * FROM twotower.{t} LIMIT 1"), t  # noqa: S608
        assert refused(c, "SELECT twotower.get_user_embedding_features(%s)", (u,))
        assert refused(c, "SELECT twotower.get_item_embedding_features('v000')")
        assert refused(c, "DELETE FROM twotower.embedding_model_versions")
        assert refused(c, "SELECT twotower.record_decision(%s, 'v000', 'like')", (u,))
    # the revoke is what stops it: grant it back and anon reads the registry
    with conn.transaction(force_rollback=True):
        conn.execute("GRANT USAGE ON SCHEMA twotower TO anon; GRANT SELECT ON twotower.embedding_model_versions TO anon")
        with acting(conn, "anon") as c:
            assert not refused(c, "SELECT * FROM twotower.embedding_model_versions")


def test_authenticated_sees_only_its_own_rows(world):
    conn, u, other = world
    total = conn.execute("SELECT count(DISTINCT user_id) FROM user_embeddings").fetchone()[0]
    assert total > 2
    with acting(conn, "authenticated", u) as c:
        assert c.execute("SELECT DISTINCT user_id FROM twotower.user_embeddings").fetchall() == [(u,)]
        assert c.execute("SELECT DISTINCT user_id FROM twotower.recommendation_log").fetchall() == [(u,)]
        assert refused(c, "SELECT * FROM twotower.embedding_model_versions")
        assert refused(c, "SELECT * FROM twotower.src_decisions")  # the app's rows, through our views
        assert refused(c, "INSERT INTO twotower.user_embeddings (model_version, user_id, embedding) "
                          "VALUES ('v1', %s, '[1,2]')", (u,))
        assert refused(c, "SELECT twotower.record_decision(%s, 'v000', 'like')", (u,))
    # the policy is what stops it: without row level security everyone's vectors show
    with conn.transaction(force_rollback=True):
        conn.execute("ALTER TABLE twotower.user_embeddings DISABLE ROW LEVEL SECURITY")
        with acting(conn, "authenticated", u) as c:
            assert c.execute("SELECT count(DISTINCT user_id) FROM twotower.user_embeddings").fetchone()[0] == total


def test_feature_functions_answer_authenticated_only_for_itself(world):
    conn, u, other = world
    with acting(conn, "authenticated", u) as c:
        mine = c.execute("SELECT twotower.get_user_embedding_features(%s)", (u,)).fetchone()[0]
        theirs = c.execute("SELECT twotower.get_user_embedding_features(%s)", (other,)).fetchone()[0]
        assert mine["user_id"] == u and mine["like_count"] > 0
        assert theirs is None
        assert c.execute("SELECT twotower.get_item_embedding_features('v000')").fetchone()[0]["video_id"] == "v000"
    with acting(conn, "service_role") as c:  # the service acts for anyone
        assert c.execute("SELECT twotower.get_user_embedding_features(%s)", (other,)).fetchone()[0]["user_id"] == other
        assert c.execute("SELECT count(DISTINCT user_id) FROM twotower.user_embeddings").fetchone()[0] > 2
        c.execute("DELETE FROM twotower.recommendation_log WHERE user_id = %s", (other,))
    # the guard is what stops it: the same function without the check leaks another user's history
    with conn.transaction(force_rollback=True):
        body = conn.execute("SELECT pg_get_functiondef('twotower.get_user_embedding_features'::regproc)").fetchone()[0]
        conn.execute(body.replace("current_setting('role') NOT IN ('authenticated', 'anon')", "true"))
        with acting(conn, "authenticated", u) as c:
            assert c.execute("SELECT twotower.get_user_embedding_features(%s)", (other,)).fetchone()[0] is not None


def test_functions_pin_their_search_path(conn):
    rows = conn.execute("SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE n.nspname = 'twotower'").fetchall()
    assert rows
    unpinned = [name for name, cfg in rows if not any(c.startswith("search_path=") for c in (cfg or []))]
    # the id casts stay unpinned on purpose: PostgreSQL inlines them only without a SET clause (so
    # the app's indexes serve `user_key = twotower.user_key($1)`); their bodies name no object
    assert sorted(unpinned) == ["user_key", "video_key"], unpinned
    for fn in unpinned:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = 'twotower'::regnamespace",
                            (fn,)).fetchone()[0]
        assert body.strip().rstrip(";") in ("SELECT $1", "SELECT $1::text"), body
