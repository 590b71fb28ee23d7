"""The demographic cold start: a cold user whose segment (age_range/region) had enough decisions
gets that segment's popular list first, in the service and in recommend_videos; other cold
users get the global one."""

from fastapi.testclient import TestClient

from tests.test_serve import SVC, app_settings, rec, world  # noqa: F401
from twotower.serve import create_app

SEG_REASON = ["popular in your age group and region"]


def test_cold_users_get_their_segments_list_when_it_has_enough_decisions(world, settings):  # noqa: F811
    big, small = world.execute(
        "WITH ref AS (SELECT max(created_at) AS t FROM user_video_decisions) "
        "SELECT p.age_range, p.region, count(*) FROM user_video_decisions d JOIN profiles p USING (user_id), ref "
        "WHERE d.created_at >= ref.t - interval '30 days' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2").fetchall()[::-1][-1:-3:-1]
    assert big[2] > small[2] > 0
    world.execute("UPDATE twotower.settings SET value = %s WHERE key = 'segment_min_decisions'", (str(big[2]),))
    world.execute("SELECT twotower.refresh_popular(interval '0')")
    for u, age, region in (("seg-big", big[0], big[1]), ("seg-small", small[0], small[1]), ("seg-none", None, None)):
        world.execute("INSERT INTO profiles (user_id, age_range, region) VALUES (%s, %s, %s)", (u, age, region))
    world.commit()
    own = [v for (v,) in world.execute("SELECT video_id FROM twotower.segment_popular ORDER BY score DESC, video_id")]
    assert world.execute("SELECT count(DISTINCT segment) FROM twotower.segment_popular").fetchone()[0] == 1
    glob = [v for (v,) in world.execute("SELECT video_id FROM twotower.popular_cache ORDER BY score DESC, video_id")]
    assert len(own) >= 10 and own[:10] != glob[:10]
    with TestClient(create_app(app_settings(settings))) as client:
        body = rec(client, "seg-big", 10, headers=SVC, exclude_impressions=False).json()
        assert body["source"] == "cold_start"
        assert [i["video_id"] for i in body["items"]] == own[:10] and all(i["reasons"] == SEG_REASON for i in body["items"])
        sql = world.execute("SELECT video_id, source, reasons FROM public.recommend_videos(10, 'seg-big', NULL, false)").fetchall()
        world.commit()
        assert [r[0] for r in sql] == own[:10] and {r[1] for r in sql} == {"cold_start"} and sql[0][2] == SEG_REASON
        # past the segment's list, the global one (nothing repeated)
        deep = rec(client, "seg-big", 100, headers=SVC, exclude_impressions=False).json()["items"]
        if len(own) < 100:
            assert deep[len(own)]["reasons"] == ["popular and recent"] and len({i["video_id"] for i in deep}) == 100
        for u in ("seg-small", "seg-none"):
            items = rec(client, u, 10, headers=SVC, exclude_impressions=False).json()["items"]
            assert all(i["reasons"] == ["popular and recent"] for i in items), u
            sql = world.execute("SELECT reasons FROM public.recommend_videos(10, %s, NULL, false)", (u,)).fetchall()
            world.commit()
            assert all(r[0] == ["popular and recent"] for r in sql), u
