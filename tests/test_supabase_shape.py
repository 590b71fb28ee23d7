"""twotower inside a Supabase-shaped database, built here on the embedded server as Supabase
builds its own: a non-superuser owner, `vector` created by the superuser in schema `extensions`,
an `auth` schema with `auth.users` and `auth.uid()`, Supabase's API roles and default grants, and
an app with uuid ids (`profiles.id`), no performers, no prices and no `updated_at`, and RLS
policies of its own. The whole pipeline runs on it through the `source` mapping, and the app's
tables, rows, grants and policies are the same afterwards, and after `db reset`."""

import uuid

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.helpers import SMALL_MODEL
from tests.test_serve import app_settings, token
from twotower import batch, db, embed, registry
from twotower.config import BatchConfig, EmbeddingConfig, Settings, SourceConfig, load_config
from twotower.data import load_frames, synth
from twotower.errors import StoreUnavailable
from twotower.evaluate import Catalog, make_split
from twotower.export import export, load_artifacts
from twotower.serve import create_app
from twotower.train import train

OWNER = "supa_owner"
APP = """
CREATE TABLE public.profiles (id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
                              username text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE public.videos (id uuid PRIMARY KEY, title text, genre text, maker text,
                            created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE public.video_tags (video_id uuid REFERENCES public.videos (id) ON DELETE CASCADE, tag_name text,
                                PRIMARY KEY (video_id, tag_name));
CREATE TABLE public.user_video_decisions (
    user_id uuid NOT NULL REFERENCES public.profiles (id) ON DELETE CASCADE,
    video_id uuid NOT NULL REFERENCES public.videos (id) ON DELETE CASCADE,
    decision_type text NOT NULL CHECK (decision_type IN ('like', 'nope')),
    created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (user_id, video_id));
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.videos ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.video_tags ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.user_video_decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own profile" ON public.profiles FOR SELECT TO authenticated USING ((SELECT auth.uid()) = id);
CREATE POLICY "videos are public" ON public.videos FOR SELECT USING (true);
CREATE POLICY "tags are public" ON public.video_tags FOR SELECT USING (true);
CREATE POLICY "own decisions" ON public.user_video_decisions FOR ALL TO authenticated
    USING ((SELECT auth.uid()) = user_id) WITH CHECK ((SELECT auth.uid()) = user_id);
"""
MAPPING = SourceConfig(
    profiles={"table": "profiles", "user_id": "id", "display_name": "username", "age_range": None, "region": None,
              "updated_at": None},
    videos={"table": "videos", "description": None, "price": None, "duration_seconds": None,
            "product_released_at": None, "updated_at": None},
    video_performers={"table": None},
)


def _u(kind: str, i: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{i}"))


@pytest.fixture
def supa(admin_url):
    """(owner URL, superuser URL) of a fresh Supabase-shaped database with the app's rows."""
    name = "supa_" + uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone():
            c.execute(f"CREATE ROLE {OWNER} LOGIN CREATEROLE")
    su = admin_url.replace("/postgres?", f"/{name}?")
    owner = su.replace("postgres:@", f"{OWNER}:@")
    with psycopg.connect(su, autocommit=True) as c:  # what the platform does, as superuser
        for role in ("anon", "authenticated", "service_role"):
            if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                c.execute(f"CREATE ROLE {role} NOLOGIN")
        c.execute(f"""
            GRANT anon, authenticated, service_role TO {OWNER};
            CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions;
            GRANT USAGE ON SCHEMA extensions TO {OWNER}, anon, authenticated, service_role;
            CREATE SCHEMA auth;
            CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
            CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
              SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                              (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
            CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
              SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                              (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text $$;
            CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
              SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                              nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
            GRANT USAGE ON SCHEMA auth TO {OWNER}, anon, authenticated, service_role;
            GRANT SELECT, INSERT, DELETE ON auth.users TO {OWNER};
            GRANT REFERENCES ON auth.users TO {OWNER};
            GRANT CREATE ON DATABASE {name} TO {OWNER};
            ALTER SCHEMA public OWNER TO {OWNER};
            ALTER ROLE {OWNER} IN DATABASE {name} SET search_path = "$user", public, extensions;
            ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
            ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
            ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
        """)
    data = synth.generate(synth.SynthSpec(users=80, videos=250, decisions=3000, seed=5))
    with psycopg.connect(owner, autocommit=True) as c:  # what the app does, as the owner
        assert not c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        c.execute(APP)
        users = data.profiles.select(pl.col("user_id").map_elements(lambda x: _u("u", x), return_dtype=pl.Utf8))
        with c.cursor().copy("COPY auth.users (id) FROM STDIN") as cp:
            for (uid,) in users.iter_rows():
                cp.write_row((uid,))
        rows = [("profiles (id, username, created_at)",
                 data.profiles.select(pl.col("user_id").map_elements(lambda x: _u("u", x), return_dtype=pl.Utf8),
                                      "display_name", "created_at")),
                ("videos (id, title, genre, maker, created_at)",
                 data.videos.select(pl.col("id").map_elements(lambda x: _u("v", x), return_dtype=pl.Utf8),
                                    "title", "genre", "maker", "created_at")),
                ("video_tags (video_id, tag_name)",
                 data.tags.select(pl.col("video_id").map_elements(lambda x: _u("v", x), return_dtype=pl.Utf8),
                                  "tag_name")),
                ("user_video_decisions (user_id, video_id, decision_type, created_at)",
                 data.decisions.select(pl.col("user_id").map_elements(lambda x: _u("u", x), return_dtype=pl.Utf8),
                                       pl.col("video_id").map_elements(lambda x: _u("v", x), return_dtype=pl.Utf8),
                                       "decision_type", "created_at"))]
        for target, frame in rows:
            with c.cursor().copy(f"COPY public.{target} FROM STDIN") as cp:
                for r in frame.iter_rows():
                    cp.write_row(r)
    yield owner, su
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fingerprint(url: str) -> dict:
    """Everything of the app's that twotower must leave as it was: rows, columns, constraints,
    triggers, grants and policies of the public and auth schemas."""
    with psycopg.connect(url) as c:
        tables = [r[0] for r in c.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('public', 'auth') AND c.relkind IN ('r', 'v', 'm') ORDER BY 1")]
        out = {t: c.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "  # noqa: S608
                            f"FROM {t} x").fetchone() for t in tables}
        for name, q in {
            "columns": "SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default "
                       "FROM information_schema.columns WHERE table_schema IN ('public', 'auth') ORDER BY 1, 2, 3",
            "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                           "WHERE connamespace IN ('public'::regnamespace, 'auth'::regnamespace) ORDER BY 1, 2",
            "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal "
                        "AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN "
                        "('public'::regnamespace, 'auth'::regnamespace)) ORDER BY 1, 2",
            "policies": "SELECT schemaname, tablename, policyname, roles::text, cmd, qual, with_check FROM pg_policies "
                        "WHERE schemaname IN ('public', 'auth') ORDER BY 1, 2, 3",
            "grants": "SELECT c.oid::regclass::text, c.relacl::text, c.relrowsecurity FROM pg_class c "
                      "WHERE c.relnamespace IN ('public'::regnamespace, 'auth'::regnamespace) ORDER BY 1",
            # twotower's own public functions (recorded, dropped by db reset) are not the app's
            "functions": "SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)), p.proacl::text FROM pg_proc p "
                         "WHERE p.pronamespace IN ('public'::regnamespace, 'auth'::regnamespace) "
                         "AND p.proname NOT IN ('recommend_videos', 'twotower_mute', 'twotower_set_diversity', "
                         "'twotower_set_preferences') ORDER BY 1",
        }.items():
            out[name] = c.execute(q).fetchall()
    return out


def test_the_whole_pipeline_leaves_the_app_as_it_was(supa, tmp_path):
    owner, su = supa
    before = fingerprint(su)
    settings = Settings(DATABASE_URL=owner, TWOTOWER_HOME=tmp_path / "home")
    with db.connection(url=owner) as conn:
        applied = db.migrate(conn, MAPPING)
        assert "001_schema" in applied and not any("demo" in a for a in applied)
        assert conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                            "WHERE extname = 'vector'").fetchone()[0] == "extensions"
        # per-user lookups reach the app's own uuid indexes through the views (a text-cast id could not)
        u0, v0 = conn.execute("SELECT user_id, video_id FROM twotower.src_decisions LIMIT 1").fetchone()
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                "EXPLAIN SELECT 1 FROM twotower.src_decisions d WHERE d.user_key = twotower.user_key(%s) "
                "AND d.video_key = twotower.video_key(%s)", (u0, v0)))
            assert "user_video_decisions_pkey" in plan and "Seq Scan" not in plan, plan
        frames = load_frames(conn)
        assert frames.decisions.height == 3000 and frames.performers.height == 0
        assert frames.videos["price"].null_count() == frames.videos.height  # the app has no prices
        cat = Catalog.from_frames(frames)
        cfg = load_config(None, SMALL_MODEL + ["model.kind=hybrid", "model.init=ease_svd", "model.normalize=false",
                                                "training.epochs=0"])
        ckpt = train(cfg, frames, cat, make_split(cat, "none"), tmp_path / "ckpt", quiet=True).checkpoint
        folder = export(ckpt, None, settings.path("artifacts"), "supa1")
        registry.register(conn, folder, settings.path("artifacts"))
        art = load_artifacts(folder)
        embed.embed_videos(conn, art, EmbeddingConfig())
        embed.embed_all_users(conn, art)
        registry.activate(conn, "supa1")
        user = conn.execute("SELECT user_id FROM twotower.src_decisions GROUP BY 1 ORDER BY count(*) DESC, 1 "
                            "LIMIT 1").fetchone()[0]
        decided = {r[0] for r in conn.execute("SELECT video_id FROM twotower.src_decisions WHERE user_id = %s", (user,))}
    first = batch.run_batch_update(settings, BatchConfig())  # users: no watermark yet; videos: as embedded
    assert (first.videos, first.users) == (0, 76)
    again = batch.run_batch_update(settings, BatchConfig())
    assert (again.videos, again.users) == (0, 0)
    with psycopg.connect(su) as c:  # the app edits a video (it has no updated_at): found by its fingerprint
        vid = str(c.execute("SELECT id FROM public.videos ORDER BY id LIMIT 1").fetchone()[0])
        c.execute("UPDATE public.videos SET genre = 'edited' WHERE id = %s", (vid,))
        c.commit()
    edited = batch.run_batch_update(settings, BatchConfig())
    assert (edited.videos, edited.users) == (1, 0)
    with psycopg.connect(su) as c:  # put it back, for the fingerprint of the app's tables below
        c.execute("UPDATE public.videos SET genre = %s WHERE id = %s",
                  (frames.videos.filter(pl.col("id") == vid)["genre"][0], vid))
        c.commit()
    with TestClient(create_app(app_settings(settings))) as client:
        r = client.post("/v1/recommendations", json={"user_id": user, "limit": 10}, headers=token(user))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "two_tower" and len(body["items"]) == 10
        assert not decided & {i["video_id"] for i in body["items"]}
        assert all(uuid.UUID(i["video_id"]) for i in body["items"])
        # the same list from the database itself, as supabase.rpc('recommend_videos') asks for it
        with psycopg.connect(owner) as c, c.transaction():
            c.execute("SET LOCAL ROLE authenticated")
            c.execute("SELECT set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{user}", "role": "authenticated"}}',))
            rows = c.execute("SELECT video_id, source FROM public.recommend_videos(10)").fetchall()
        assert [r[0] for r in rows] == [i["video_id"] for i in body["items"]]
        assert {r[1] for r in rows} == {"two_tower_stored"}  # this model's user tower has its content MLP
        assert fingerprint(su) == before  # reading changed nothing of the app's
        # the one write twotower makes into the app's tables: a decision, with the app's types
        video = body["items"][0]["video_id"]
        w = client.post("/v1/decisions", json={"user_id": user, "video_id": video, "decision_type": "like"},
                        headers=token(user))
        assert w.status_code == 200, w.text
    with psycopg.connect(su) as c:
        assert c.execute("SELECT decision_type FROM public.user_video_decisions WHERE user_id = %s AND video_id = %s",
                         (user, video)).fetchone() == ("like",)
        c.execute("DELETE FROM public.user_video_decisions WHERE user_id = %s AND video_id = %s", (user, video))
        c.commit()
    assert fingerprint(su) == before
    with db.connection(url=owner) as conn:
        dropped = db.reset(conn)
    # no demo tables, no auth stand-in: the app's are untouched
    assert dropped == ["schema twotower", "functions public.recommend_videos, public.twotower_mute, "
                       "public.twotower_set_diversity, public.twotower_set_preferences"]
    assert fingerprint(su) == before


def test_supabase_migration_files_install_the_same_schema(supa, tmp_path, admin_url):
    """The files `twotower supabase migrations` writes, applied one by one as `supabase db push`
    does, give the schema `db init` gives: nothing left for `db init` to do, the same objects,
    the same grants."""
    from twotower.supabase import write_migrations

    owner, su = supa
    with db.connection(url=owner) as conn:
        paths = write_migrations(conn, MAPPING, tmp_path / "supabase" / "migrations")
    assert [p.name.split("_", 1)[1] for p in paths][:2] == ["twotower_schema.sql", "twotower_source.sql"]
    assert sorted(p.name for p in paths) == [p.name for p in paths]  # the CLI's order is the names' order
    with psycopg.connect(owner, autocommit=True) as c:  # as `supabase db push`: each file as it is
        for p in paths:
            with c.transaction():
                c.execute(p.read_text())

    def objects(url: str) -> list:
        with psycopg.connect(url) as c:
            return c.execute(
                "SELECT c.relname, c.relkind, c.relrowsecurity, c.relacl::text FROM pg_class c "
                "WHERE c.relnamespace = 'twotower'::regnamespace AND c.relkind IN ('r', 'v') "
                "UNION ALL SELECT p.oid::regprocedure::text, 'f', p.prosecdef, p.proacl::text FROM pg_proc p "
                "WHERE p.pronamespace = 'twotower'::regnamespace ORDER BY 1").fetchall()

    pushed = objects(owner)
    with db.connection(url=owner) as conn:
        assert db.migrate(conn, MAPPING) == []  # `db init` afterwards: already up to date
        db.ensure_schema(conn)
    assert objects(owner) == pushed
    with db.connection(url=owner) as conn:  # and `db init` on its own gives the same objects
        db.reset(conn)
        db.migrate(conn, MAPPING)
    assert objects(owner) == pushed
    with pytest.raises(Exception, match="refusing to overwrite"):
        from datetime import datetime

        stamp = datetime.strptime(paths[0].name[:14], "%Y%m%d%H%M%S")
        with db.connection(url=owner) as conn:
            write_migrations(conn, MAPPING, paths[0].parent, now=stamp.replace(tzinfo=None))


def test_synth_and_import_never_write_into_the_apps_tables(supa, tmp_path):
    owner, su = supa
    before = fingerprint(su)
    with db.connection(url=owner) as conn:
        db.migrate(conn, MAPPING)
        with pytest.raises(StoreUnavailable, match="app's own"):
            synth.load(conn, synth.generate(synth.SynthSpec(users=5, videos=10, decisions=20, seed=1)), replace=True)
        from twotower.data import importers

        frames = importers.ImportFrames(profiles=None, videos=pl.DataFrame({"id": ["x"]}), tags=None, performers=None,
                                        decisions=pl.DataFrame({"user_id": ["u"], "video_id": ["x"],
                                                                "decision_type": ["like"]}))
        with pytest.raises(StoreUnavailable, match="app's own"):
            importers.ingest(conn, frames)
        db.reset(conn)
    assert fingerprint(su) == before
