from pathlib import Path

import polars as pl
import pytest

from tests.conftest import count
from twotower.data import importers, load_frames
from twotower.errors import InvalidInput

TABLES = ("profiles", "videos", "video_tags", "video_performers", "user_video_decisions")


def snapshot(conn):
    return {t: count(conn, t) for t in TABLES}


def write_ml_latest(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
        '2,"Heat, The (1995)",Action|Crime\n3,No Year,(no genres listed)\n')
    (d / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n"
        "2,1,5.0,964982224\n2,3,1.0,964983815\n")
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,Pixar,1445714994\n")
    return d


def test_ml_latest_small_layout(conn, tmp_path):
    d = write_ml_latest(tmp_path / "ml")
    counts = importers.ingest(conn, importers.read_movielens(d))
    assert counts["user_video_decisions"] == 4 and counts["videos"] == 3 and counts["profiles"] == 2
    rows = dict(conn.execute("SELECT user_id || '/' || video_id, decision_type FROM user_video_decisions").fetchall())
    assert rows == {"1/1": "like", "1/2": "nope", "2/1": "like", "2/3": "nope"}  # >= 4 is like
    tags = {t for (t,) in conn.execute("SELECT tag_name FROM video_tags WHERE video_id='1'")}
    assert tags == {"adventure", "animation", "children", "pixar"}
    rel = conn.execute("SELECT extract(year FROM product_released_at), title FROM videos WHERE id='2'").fetchone()
    assert rel == (1995, "Heat, The (1995)")
    assert conn.execute("SELECT product_released_at FROM videos WHERE id='3'").fetchone()[0] is None
    conn.commit()
    before = snapshot(conn)
    upd = conn.execute("SELECT max(updated_at) FROM videos").fetchone()[0]
    conn.commit()
    importers.ingest(conn, importers.read_movielens(d))  # idempotent
    assert snapshot(conn) == before
    assert conn.execute("SELECT max(updated_at) FROM videos").fetchone()[0] == upd


def test_ml_1m_layout(conn, tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n".encode("latin-1"))
    (d / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::2::4::978301968\n")
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    importers.ingest(conn, importers.read_movielens(d))
    assert count(conn, "user_video_decisions") == 3
    prof = dict(conn.execute("SELECT user_id, age_range FROM profiles").fetchall())
    assert prof == {"1": "under 18", "2": "56+"}
    name = conn.execute("SELECT display_name, region FROM profiles WHERE user_id='1'").fetchone()
    assert "K-12 student" in name[0] and name[1] == "480"
    assert conn.execute("SELECT title FROM videos WHERE id='2'").fetchone()[0] == "Amélie (2001)"


def test_ml_100k_layout(conn, tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    flags = "|".join(["0", "0", "0", "1", "1"] + ["0"] * 14)
    (d / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n"
                              f"2|GoldenEye (1995)|01-Jan-1995||http://y|{flags}\n")
    (d / "u.data").write_text("196\t1\t3\t881250949\n186\t2\t4\t891717742\n")
    (d / "u.user").write_text("196|49|M|writer|55105\n186|39|F|executive|00000\n")
    importers.ingest(conn, importers.read_movielens(d))
    assert count(conn, "user_video_decisions") == 2
    assert dict(conn.execute("SELECT user_id, age_range FROM profiles").fetchall()) == {"196": "45-54", "186": "35-44"}
    tags = {t for (t,) in conn.execute("SELECT tag_name FROM video_tags WHERE video_id='1'")}
    assert tags == {"animation", "children's"}


def write_tables(d: Path, decisions: str | None = None, videos: str | None = None) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    (d / "videos.csv").write_text(videos or "id,title,price,duration_seconds,product_released_at,maker\n"
                                  "a,A,1200,3600,2024-01-01T00:00:00Z,m1\nb,B,,5400,,m2\n")
    (d / "decisions.csv").write_text(decisions or "user_id,video_id,decision_type,created_at\n"
                                     "x,a,like,2024-05-01T10:00:00Z\nx,b,nope,1714557600\ny,a,LIKE,2024-05-02 11:00:00\n")
    (d / "tags.csv").write_text("video_id,tag_name\na,t1\na,t2\nb,t1\n")
    (d / "performers.csv").write_text("video_id,performer_name\na,p1\n")
    return {"videos": d / "videos.csv", "decisions": d / "decisions.csv", "tags": d / "tags.csv",
            "performers": d / "performers.csv"}


def test_table_import_csv_and_parquet(conn, tmp_path):
    files = write_tables(tmp_path / "csv")
    importers.ingest(conn, importers.read_tables(**files))
    assert snapshot(conn) == {"profiles": 2, "videos": 2, "video_tags": 3, "video_performers": 1,
                              "user_video_decisions": 3}
    assert conn.execute("SELECT price FROM videos WHERE id='b'").fetchone()[0] is None
    conn.commit()
    # the same data as Parquet is a no-op
    pq = {}
    for k, f in files.items():
        pq[k] = f.with_suffix(".parquet")
        pl.read_csv(f, infer_schema_length=0).write_parquet(pq[k])
    before = snapshot(conn)
    importers.ingest(conn, importers.read_tables(**pq))
    assert snapshot(conn) == before


def test_changed_video_bumps_updated_at(conn, tmp_path):
    files = write_tables(tmp_path / "t")
    importers.ingest(conn, importers.read_tables(**files))
    old = dict(conn.execute("SELECT id, updated_at FROM videos").fetchall())
    conn.commit()
    (tmp_path / "t" / "tags.csv").write_text("video_id,tag_name\na,t1\na,t2\nb,t3\n")
    importers.ingest(conn, importers.read_tables(**files))
    new = dict(conn.execute("SELECT id, updated_at FROM videos").fetchall())
    assert new["a"] == old["a"] and new["b"] > old["b"]
    assert {t for (t,) in conn.execute("SELECT tag_name FROM video_tags WHERE video_id='b'")} == {"t3"}


@pytest.mark.parametrize("decisions,message", [
    ("user_id,video_id,decision_type,created_at\nx,a,meh,2024-01-01\n", "row 2: unknown decision_type 'meh'"),
    ("user_id,video_id,decision_type,created_at\nx,a,like,2024-01-01\nx,zzz,like,2024-01-01\n",
     "row 3: video 'zzz' is not in the videos file"),
    ("user_id,video_id,decision_type,created_at\nx,a,like,yesterday\n", "row 2: bad timestamp 'yesterday'"),
    ("user_id,video_id,created_at\nx,a,2024-01-01\n", "missing column(s) decision_type"),
])
def test_bad_input_names_file_row_and_leaves_db_unchanged(conn, tmp_path, decisions, message):
    good = write_tables(tmp_path / "good")
    importers.ingest(conn, importers.read_tables(**good))
    before = snapshot(conn)
    files = write_tables(tmp_path / "bad", decisions=decisions,
                         videos="id,title\na,A changed\nc,C\n")
    with pytest.raises(InvalidInput) as e:
        importers.ingest(conn, importers.read_tables(**files))
    assert message in str(e.value) and "decisions.csv" in str(e.value)
    assert snapshot(conn) == before
    assert conn.execute("SELECT title FROM videos WHERE id='a'").fetchone()[0] == "A"


def test_missing_files(tmp_path):
    with pytest.raises(InvalidInput, match="file not found"):
        importers.read_tables(tmp_path / "v.csv", tmp_path / "d.csv")
    with pytest.raises(InvalidInput, match="not a folder"):
        importers.read_movielens(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no MovieLens layout"):
        importers.read_movielens(tmp_path / "empty")


def test_load_frames_with_window(conn, tmp_path):
    from datetime import UTC, datetime

    importers.ingest(conn, importers.read_tables(**write_tables(tmp_path / "w")))
    f = load_frames(conn)
    assert f.decisions.height == 3 and f.videos.height == 2 and f.tags.height == 3
    f2 = load_frames(conn, until=datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert f2.decisions.height == 2
    assert f2.decisions["created_at"].max() < datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_movielens_user_tags_keep_their_time(conn, tmp_path):
    """A user tag exists from its timestamp on (features for an earlier cutoff must not see it);
    a genre has no time: it was always there."""
    importers.ingest(conn, importers.read_movielens(write_ml_latest(tmp_path / "ml")))
    rows = dict(conn.execute("SELECT tag_name, created_at FROM video_tags WHERE video_id = '1'").fetchall())
    assert rows["pixar"].timestamp() == 1445714994 and rows["animation"] is None
    assert conn.execute("SELECT count(*) FROM twotower.src_video_tags WHERE created_at IS NOT NULL").fetchone()[0] == 1


def test_ties_in_time_follow_import_order(conn, tmp_path):
    """Two answers in the same second: the split's "last" one is the one imported last, whatever
    the ids look like ("9" before "10" in the file, though "10" < "9" as text)."""
    from twotower.evaluate import Catalog, make_split

    videos = "id,title\n9,Nine\n10,Ten\n"
    decisions = ("user_id,video_id,decision_type,created_at\n"
                 "x,9,like,2024-05-01T10:00:00Z\nx,10,like,2024-05-01T10:00:00Z\n"
                 "y,10,like,2024-05-01T10:00:00Z\ny,9,like,2024-05-01T10:00:00Z\n")
    files = write_tables(tmp_path / "ties", decisions=decisions, videos=videos)
    files.pop("tags"), files.pop("performers")
    importers.ingest(conn, importers.read_tables(**files))
    f = load_frames(conn)
    assert f.decisions["seq"].null_count() == 0
    s = make_split(Catalog.from_frames(f), "temporal-user", 0.5)
    assert dict(zip(s.test["user_id"].to_list(), s.test["video_id"].to_list(), strict=True)) == {"x": "10", "y": "9"}
