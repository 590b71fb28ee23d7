"""A simulated online test of the swipe deck, on the synthetic world's hidden tastes.

    python bench/simulate.py                 # 200 simulated users, every policy
    python bench/simulate.py --users 50      # a quick look

The rules, fixed before any tuning (docs/benchmarks.md repeats them):
- World: synth.SynthSpec(users=2200, videos=3000, decisions=120_000, seed=11). The simulated users
  are drawn at random (seeded) from it and their logged decisions removed before training, so
  they arrive as new users; no model reads the hidden tastes (synth.Truth).
- The model is config/best.yaml (the hybrid, EASE closed form; its user vector is the sum of the
  liked videos' rows) trained on everyone else's decisions, exported, embedded and served by
  the real service (in-process, through its HTTP API with the service key).
- A session: the user asks for a deck of 10, answers the cards in order, asks for the next deck,
  and leaves after 4 nopes in a row or 60 answered cards; cards of the last deck after the one
  they left on stay unanswered. Each user has 3 sessions, one after the other.
- An answer is a like with probability sigmoid(the world's like logit + N(0, 0.6)), the noise
  drawn once per (user, video), so every policy meets the same answer for the same card.
  Each answer is posted to POST /v1/decisions (API policies), so the next deck sees it.
- Policies, each from the same starting database: popularity (most liked in the logs,
  undecided), random (undecided), two_tower (the service without the deck: exclude_impressions
  false), two_tower+impressions (the service's default: impressions kept out for a day), and
  two_tower+mmrD (impressions, and MMR re-ranking with diversity D in 0.25, 0.5, 0.75). The plain
  policies ask for diversity 0 explicitly. The default serving.diversity is chosen by a rule set
  before the run: the largest D whose like rate is at least 0.98x that of two_tower+impressions
  (0 if none), printed at the end. two_tower+exploreX (impressions, and a share X in 0.1, 0.2 of
  each deck dealt to new videos by Thompson sampling); serving.explore_share is the largest X
  whose like rate is at least 0.95x that of two_tower+impressions and whose share of new videos
  with 20 answers is higher (0 if none). Between users exploration's pool is recounted (as if
  each user arrived at least a minute after the previous one).
  two_tower+onboarding (impressions): before their first session each user picks 3 tags at
  sign-up (POST /v1/users/{id}/preferences): the tags, among those with 10 or more videos, whose
  videos they would like most often by their own answers; it runs with the installation's
  serving.onboarding_fade_likes, and two_tower+onboarding-fadeF with F in 1 (the picks alone until
  the first like, then none of them) and 5; serving.onboarding_fade_likes is the F (of 1, 5, 10)
  with the highest like rate, ties within 1% going to the smaller F (a first run at a77a7eb, with
  5 as the default, chose 10). two_tower+nopesW (impressions, and
  serving.nope_weight W in 0.5, 1: candidates close to the user's 20 latest nopes demoted);
  serving.nope_weight is the W with the higher like rate if that beats two_tower+impressions by
  more than 1% (else 0). two_tower+impressions-segments: the demographic cold start off (no
  segment reaches serving.segment_min_decisions), to measure it both ways.
Per policy: like rate (likes / answered cards, pooled), cards per session, distinct videos
served, the share of new videos (synth cold videos: released in the last days, absent from the
logs) that reach 20 answers, the answers a new video gets on average, the cards answered (all users together) until a new video's 20th
answer (median over those that reach it), diversity@10 (tag entropy of each deck, bits); 95% intervals by
bootstrap over users. Writes bench/results/simulate.json (untracked).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, machine, scratch_home, write_json  # noqa: E402

from twotower import db, registry  # noqa: E402
from twotower.config import EmbeddingConfig, ServingConfig, Settings, load_config  # noqa: E402
from twotower.data import load_frames, synth  # noqa: E402
from twotower.embed import embed_all_users, embed_videos  # noqa: E402
from twotower.evaluate import Catalog, make_split  # noqa: E402
from twotower.export import export, load_artifacts  # noqa: E402
from twotower.train import train  # noqa: E402
from twotower.users import forget  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = synth.SynthSpec(users=2200, videos=3000, decisions=120_000, seed=11)
DECK, SESSIONS, PATIENCE, MAX_CARDS, NEW_ANSWERS = 10, 3, 4, 60, 20
KEY = "simulate-service-key"
MMR = (0.25, 0.5, 0.75)
EXPLORE = (0.1, 0.2)
FADES = (1, 5)  # serving.onboarding_fade_likes besides the default, 10 (1: hand over at the first like)
FADE_TIE = 1.01  # serving.onboarding_fade_likes: like rates within 1% of the best go to the smaller F
POLICIES = ["popularity", "random", "two_tower", "two_tower+impressions", *(f"two_tower+mmr{d}" for d in MMR),
            *(f"two_tower+explore{x}" for x in EXPLORE), "two_tower+onboarding",
            *(f"two_tower+onboarding-fade{f}" for f in FADES),
            *(f"two_tower+nopes{w}" for w in (0.5, 1.0)), "two_tower+impressions-segments"]
# installation settings a policy runs under (twotower.settings, as `db init` writes them), then put back
SETTINGS = {**{f"two_tower+nopes{w}": {"nope_weight": str(w)} for w in (0.5, 1.0)},
            **{f"two_tower+onboarding-fade{f}": {"onboarding_fade_likes": str(f)} for f in FADES},
            "two_tower+impressions-segments": {"segment_min_decisions": "1000000000"}}
NOPE_GAIN = 1.01  # serving.nope_weight: the best weight, if its like rate beats the plain deck's by 1%
PICKS = 3  # onboarding: the tags a simulated user picks at sign-up
EXPLORE_BUDGET = 0.95  # serving.explore_share: the largest share keeping this share of the like rate
LIKE_BUDGET = 0.98  # serving.diversity: the largest MMR setting keeping this share of the plain deck's like rate


@dataclass
class Log:
    likes: np.ndarray  # per simulated user
    cards: np.ndarray
    sessions: np.ndarray
    decks: list[list[int]] = field(default_factory=list)  # video indices of every deck served
    answers: np.ndarray | None = None  # per video: answers given in the simulation
    answered: int = 0  # cards answered so far, all users
    first20: dict[int, int] = field(default_factory=dict)  # video -> `answered` at its 20th answer


def build(home: Path, n_users: int, seed: int):
    data = synth.generate(SPEC)
    rng = np.random.default_rng(seed)
    sim = np.sort(rng.choice(SPEC.users, size=n_users, replace=False))
    sim_ids = set(data.profiles["user_id"].gather(sim).to_list())
    data.decisions = data.decisions.filter(~pl.col("user_id").is_in(list(sim_ids)))
    s = Settings(TWOTOWER_HOME=home, DATABASE_URL=None, TWOTOWER_SERVICE_KEY=KEY)
    cfg = load_config(ROOT / "config" / "best.yaml")
    with db.connection(s) as conn:
        db.migrate(conn, demo_tables=True, roles=True)
        synth.load(conn, data)
        frames = load_frames(conn)
    cat = Catalog.from_frames(frames)
    r = train(cfg, frames, cat, make_split(cat, "none"), s.path("checkpoints") / "sim", quiet=True)
    folder = export(r.checkpoint, None, s.path("artifacts"), "sim", force=True)
    with db.connection(s) as conn:
        registry.register(conn, folder, s.path("artifacts"))
        art = load_artifacts(Path(folder))
        embed_videos(conn, art, EmbeddingConfig())
        embed_all_users(conn, art)
        registry.activate(conn, "sim")
    return s, data, sim


def answers(truth: synth.Truth, sim: np.ndarray, seed: int) -> np.ndarray:
    """(len(sim), V) like or not, for every card a simulated user could meet (one noise draw each)."""
    rng = np.random.default_rng(seed + 1)
    V = truth.video_vec.shape[0]
    u = np.repeat(sim, V)
    v = np.tile(np.arange(V), sim.size)
    logit = truth.like_logit(u, v).reshape(sim.size, V) + rng.normal(scale=0.6, size=(sim.size, V))
    return rng.random((sim.size, V)) < 1.0 / (1.0 + np.exp(-logit))


def run_policy(name: str, s: Settings, data: synth.SynthData, sim: np.ndarray, like: np.ndarray, seed: int) -> Log:
    from fastapi.testclient import TestClient

    from twotower.serve import create_app

    vid = data.videos["id"].to_list()
    index = {v: i for i, v in enumerate(vid)}
    uids = data.profiles["user_id"].gather(sim).to_list()
    pop = np.bincount(data.decisions.filter(pl.col("decision_type") == "like")["video_id"]
                      .replace_strict(index, return_dtype=pl.Int64).to_numpy(), minlength=len(vid))
    pop_order = np.lexsort((np.arange(len(vid)), -pop))
    rng = np.random.default_rng(seed + 2)
    log = Log(np.zeros(sim.size), np.zeros(sim.size), np.zeros(sim.size), answers=np.zeros(len(vid)))
    headers = {"Authorization": f"Bearer {KEY}"}
    defaults = set_settings(s, SETTINGS.get(name, {}))
    client = TestClient(create_app(s)).__enter__() if name.startswith("two_tower") else None
    picks = onboarding_picks(data, like, index) if "+onboarding" in name else None
    try:
        if client is not None:
            refresh_explore(s)  # from the starting database's answers
        for k, user in enumerate(uids):
            decided = np.zeros(len(vid), dtype=bool)
            if picks is not None:
                client.post(f"/v1/users/{user}/preferences", json={"tags": picks[k]}, headers=headers).raise_for_status()
            for _ in range(SESSIONS):
                log.sessions[k] += 1
                cards = nopes = 0
                while cards < MAX_CARDS and nopes < PATIENCE:
                    if name == "popularity":
                        deck = [int(i) for i in pop_order[~decided[pop_order]][:DECK]]
                    elif name == "random":
                        free = np.flatnonzero(~decided)
                        deck = [int(i) for i in rng.choice(free, size=min(DECK, free.size), replace=False)]
                    else:
                        body = {"user_id": user, "limit": DECK, "exclude_impressions": name != "two_tower",
                                "diversity": float(name.split("+mmr")[1]) if "+mmr" in name else 0.0,
                                "explore_share": float(name.split("+explore")[1]) if "+explore" in name else 0.0}
                        r = client.post("/v1/recommendations", json=body, headers=headers)
                        r.raise_for_status()
                        deck = [index[i["video_id"]] for i in r.json()["items"]]
                    if not deck:
                        break
                    log.decks.append(deck)
                    for v in deck:
                        if cards >= MAX_CARDS or nopes >= PATIENCE:
                            break  # the user left: the rest of this deck stays unanswered
                        liked = bool(like[k, v])
                        decided[v] = True
                        cards += 1
                        log.answers[v] += 1
                        log.answered += 1
                        if log.answers[v] == NEW_ANSWERS:
                            log.first20[v] = log.answered
                        log.likes[k] += liked
                        nopes = 0 if liked else nopes + 1
                        if client is not None:
                            d = {"user_id": user, "video_id": vid[v], "decision_type": "like" if liked else "nope",
                                 "refresh_embedding": False}  # the next deck computes the vector from the fresh history
                            client.post("/v1/decisions", json=d, headers=headers).raise_for_status()
                log.cards[k] += cards
            if client is not None:  # time passes between users: exploration's pool is recounted
                refresh_explore(s)
    finally:
        if client is not None:
            client.__exit__(None, None, None)
        set_settings(s, defaults)
    return log


def set_settings(s: Settings, values: dict[str, str]) -> dict[str, str]:
    """Put `values` into twotower.settings (and recompute the popular lists); the old values back."""
    if not values:
        return {}
    with db.connection(s) as conn:
        old = dict(conn.execute("SELECT key, value FROM twotower.settings WHERE key = ANY(%s)", (list(values),)).fetchall())
        for k, v in values.items():
            conn.execute("UPDATE twotower.settings SET value = %s WHERE key = %s", (v, k))
        conn.execute("SELECT twotower.refresh_popular(interval '0')")
        conn.commit()
    return old


def onboarding_picks(data: synth.SynthData, like: np.ndarray, index: dict[str, int]) -> list[list[str]]:
    """The PICKS tags each simulated user picks at sign-up: those whose videos they would like
    most often (their own answers, as a person knows their taste; no model reads them)."""
    t = data.tags.select(pl.col("video_id").replace_strict(index, return_dtype=pl.Int64).alias("i"), "tag_name")
    names = sorted(set(t["tag_name"].to_list()))
    col = {n: j for j, n in enumerate(names)}
    tags = np.zeros((len(index), len(names)), dtype=np.float32)
    tags[t["i"].to_numpy(), [col[n] for n in t["tag_name"].to_list()]] = 1
    rate = (like.astype(np.float32) @ tags) / np.maximum(tags.sum(axis=0), 1)
    rate[:, tags.sum(axis=0) < 10] = -1  # a tag with a handful of videos says little
    return [[names[j] for j in np.argsort(-r, kind="stable")[:PICKS]] for r in rate]


def refresh_explore(s: Settings) -> None:
    with db.connection(s) as conn:
        conn.execute("SELECT twotower.refresh_explore(interval '0')")
        conn.commit()


def reset(s: Settings, users: list[str]) -> None:
    """Back to the starting database: the simulated users' decisions and everything twotower
    holds about them go."""
    with db.connection(s) as conn:
        conn.execute("DELETE FROM user_video_decisions WHERE user_id = ANY(%s)", (users,))
        conn.commit()
        for u in users:
            forget(conn, u)
        conn.commit()


def ci(values: np.ndarray, weights: np.ndarray | None, rng: np.random.Generator) -> list[float]:
    """95% bootstrap interval over users of a pooled ratio (weights) or a mean."""
    idx = rng.integers(0, values.size, size=(1000, values.size))
    if weights is None:
        stats = values[idx].mean(axis=1)
    else:
        stats = values[idx].sum(axis=1) / np.maximum(weights[idx].sum(axis=1), 1)
    return [round(float(x), 4) for x in np.percentile(stats, [2.5, 97.5])]


def summarise(log: Log, data: synth.SynthData) -> dict:
    from twotower.metrics import diversity

    rng = np.random.default_rng(0)
    vid = data.videos["id"].to_list()
    index = {v: i for i, v in enumerate(vid)}
    t = data.tags.select(pl.col("video_id").replace_strict(index, return_dtype=pl.Int64).alias("i"),
                         pl.col("tag_name").cast(pl.Categorical).to_physical().alias("t"))
    import scipy.sparse as sp

    tags = sp.csr_matrix((np.ones(t.height), (t["i"].to_numpy(), t["t"].to_numpy())),
                         shape=(len(vid), int(t["t"].max()) + 1))
    full = np.array([d for d in log.decks if len(d) == DECK])
    cold = data.truth.cold_video
    per_session = log.cards / np.maximum(log.sessions, 1)
    return {
        "like_rate": round(float(log.likes.sum() / max(log.cards.sum(), 1)), 4),
        "like_rate_ci": ci(log.likes, log.cards, rng),
        "cards_per_session": round(float(per_session.mean()), 2),
        "cards_per_session_ci": ci(per_session, None, rng),
        "distinct_videos_served": len({v for d in log.decks for v in d}),
        "new_videos_served": len({v for d in log.decks for v in d if cold[v]}),
        "new_videos_with_20_answers": round(float((log.answers[cold] >= NEW_ANSWERS).mean()), 4),
        "answers_per_new_video": round(float(log.answers[cold].mean()), 2),
        # how soon: cards answered (by all users together) until a new video's 20th answer, median
        "cards_until_new_video_20th_answer": (int(np.median([n for v, n in log.first20.items() if cold[v]]))
                                              if any(cold[v] for v in log.first20) else None),
        "diversity@10": round(float(diversity(full, tags)), 3) if full.size else None,
        "decks": len(log.decks),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--only", help="comma-separated policies")
    a = ap.parse_args()
    t0 = time.perf_counter()
    home = scratch_home("simulate")
    shutil.rmtree(home, ignore_errors=True)
    s, data, sim = build(home, a.users, a.seed)
    like = answers(data.truth, sim, a.seed)
    users = data.profiles["user_id"].gather(sim).to_list()
    out: dict = {"policies": {}, "_meta": {"users": a.users, "sessions": SESSIONS, "deck": DECK, "patience": PATIENCE,
                                           "max_cards": MAX_CARDS, "world": str(SPEC), "machine": machine(),
                                           "commit": git_commit(), "cold_videos": int(data.truth.cold_video.sum())}}
    for name in (a.only.split(",") if a.only else POLICIES):
        t = time.perf_counter()
        log = run_policy(name, s, data, sim, like, a.seed)
        out["policies"][name] = summarise(log, data) | {"seconds": round(time.perf_counter() - t, 1)}
        print(name, out["policies"][name], flush=True)
        reset(s, users)
    base = out["policies"].get("popularity")
    if base:
        for m in out["policies"].values():
            m["like_rate_vs_popularity"] = round(m["like_rate"] / base["like_rate"], 3)
            m["cards_per_session_vs_popularity"] = round(m["cards_per_session"] / base["cards_per_session"], 3)
    plain = out["policies"].get("two_tower+impressions")
    if plain:
        ok = [d for d in MMR if f"two_tower+mmr{d}" in out["policies"]
              and out["policies"][f"two_tower+mmr{d}"]["like_rate"] >= LIKE_BUDGET * plain["like_rate"]]
        out["_meta"]["chosen_diversity"] = max(ok, default=0.0)
        ok = [x for x in EXPLORE if f"two_tower+explore{x}" in out["policies"]
              and out["policies"][f"two_tower+explore{x}"]["like_rate"] >= EXPLORE_BUDGET * plain["like_rate"]
              and out["policies"][f"two_tower+explore{x}"]["new_videos_with_20_answers"]
              > plain["new_videos_with_20_answers"]]
        out["_meta"]["chosen_explore_share"] = max(ok, default=0.0)
        nope = {w: out["policies"][f"two_tower+nopes{w}"]["like_rate"] for w in (0.5, 1.0)
                if f"two_tower+nopes{w}" in out["policies"]}
        best = max(nope, key=nope.get, default=None)
        out["_meta"]["chosen_nope_weight"] = best if best and nope[best] > NOPE_GAIN * plain["like_rate"] else 0.0
    fades = {f: out["policies"][f"two_tower+onboarding-fade{f}"]["like_rate"] for f in FADES
             if f"two_tower+onboarding-fade{f}" in out["policies"]}
    if "two_tower+onboarding" in out["policies"]:  # under the installation's default
        fades[ServingConfig().onboarding_fade_likes] = out["policies"]["two_tower+onboarding"]["like_rate"]
    if fades:  # the best like rate; within FADE_TIE of it, the smaller F
        out["_meta"]["chosen_onboarding_fade_likes"] = min(f for f, r in fades.items()
                                                           if r * FADE_TIE >= max(fades.values()))
    db.stop_embedded(s)
    shutil.rmtree(home, ignore_errors=True)
    out["_meta"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print("\n| policy | like rate (95% CI) | x popularity | cards/session (95% CI) | x popularity | distinct videos "
          "| new videos served | answers per new video | new videos with 20 answers | cards until a new video's 20th "
          "answer | diversity@10 |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in out["policies"].items():
        print(f"| {name} | {m['like_rate']:.3f} ({m['like_rate_ci'][0]:.3f}-{m['like_rate_ci'][1]:.3f}) | "
              f"{m.get('like_rate_vs_popularity', 1):.2f} | {m['cards_per_session']:.1f} "
              f"({m['cards_per_session_ci'][0]:.1f}-{m['cards_per_session_ci'][1]:.1f}) | "
              f"{m.get('cards_per_session_vs_popularity', 1):.2f} | {m['distinct_videos_served']} | "
              f"{m['new_videos_served']} | {m['answers_per_new_video']} | {m['new_videos_with_20_answers']:.3f} | "
              f"{m['cards_until_new_video_20th_answer'] or '-'} | {m['diversity@10']} |")
    if "chosen_diversity" in out["_meta"]:
        print(f"\nserving.diversity by the rule (like rate >= {LIKE_BUDGET}x two_tower+impressions): "
              f"{out['_meta']['chosen_diversity']}")
        print(f"serving.nope_weight by the rule (like rate > {NOPE_GAIN}x two_tower+impressions): "
              f"{out['_meta']['chosen_nope_weight']}")
        print(f"serving.explore_share by the rule (like rate >= {EXPLORE_BUDGET}x two_tower+impressions, more new "
              f"videos with 20 answers): {out['_meta']['chosen_explore_share']}")
    if "chosen_onboarding_fade_likes" in out["_meta"]:
        print(f"serving.onboarding_fade_likes by the rule (the best like rate, the smaller within {FADE_TIE - 1:.0%}): "
              f"{out['_meta']['chosen_onboarding_fade_likes']}")
    print(f"\nwall time {out['_meta']['wall_seconds']} s")
    write_json("simulate", out)


if __name__ == "__main__":
    main()
