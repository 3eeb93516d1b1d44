"""Record the vote streams that tests/test_rank_trending.py replays. Run once, from the repository root:

    .venv/bin/python tests/data/vote_streams/record.py

It is deterministic (a fixed seed, papers sorted by id), so running it again rewrites the same files.
Each file is JSON lines, one interaction a line, oldest first:
{"at": ISO UTC time, "user": reader name, "paper": arXiv id from papersift/data/sample.jsonl.gz, "kind": …}

organic.jsonl       Simulated traffic of a small site, 2026-06-15 00:00 to 2026-07-01 00:00 UTC, so the
                    papers listed on 2026-07-01 are brand new: nobody has voted on them yet. A pool of 240
                    readers whose activity is heavy-tailed; each day ~30 of them read ~3 papers each, picked among
                    the papers listed in the past week by popularity (log-normal: a few papers take most
                    reads) times freshness (halving every 1.5 days). Readers of this site like image and
                    video generation (×8 popularity), which the content-prior test relies on. A read is a
                    view (sometimes two); upvotes, saves and dismissals follow with chances that rise (or,
                    for dismissals, fall) with popularity. The papers the two streams below use are kept
                    out of it, so any stream can be replayed on top of it.
repeat_voter.jsonl  2026-06-30: "mallory" upvotes one paper 200 times, "viewbot" views another 300 times
                    in ten minutes, three honest readers view and upvote a third paper once each, and
                    "dora" views and upvotes a fourth once. All four papers were listed on 2026-06-30.
old_vs_new.jsonl    An old paper (listed 2026-06-24) that 8 readers upvote that day (15 view it), and a
                    new one (listed 2026-06-29) that 5 readers upvote, 1 on the 29th and 4 on the 30th
                    (8 view it, 3 of them on the 29th).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "papersift" / "data" / "sample.jsonl.gz"
OUT = Path(__file__).resolve().parent
SEED = 20260701
THEME = re.compile(r"diffusion|image generation|video generation|text-to-image|text-to-video", re.I)
UTC = dt.timezone.utc


def load_sample() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return sorted(({"id": r["id"], "listed": dt.date.fromisoformat(r["first_listed"]), "title": r["title"]}
                   for r in rows), key=lambda r: r["id"])


def event(at: dt.datetime, user: str, paper: str, kind: str) -> dict:
    return {"at": at.astimezone(UTC).isoformat(timespec="seconds"), "user": user, "paper": paper, "kind": kind}


def at_time(day: dt.date, hour: float) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC) + dt.timedelta(seconds=round(hour * 3600))


def pick_reserved(papers: list[dict], rng: random.Random) -> dict[str, str]:
    """The papers of the adversarial streams, by role."""
    on = {d: [p["id"] for p in papers if p["listed"] == dt.date.fromisoformat(d)] for d in
          ("2026-06-24", "2026-06-29", "2026-06-30")}
    x, y, w, v = rng.sample(on["2026-06-30"], 4)
    return {"repeated": x, "honest": y, "viewbot": w, "single": v,
            "old": rng.choice(on["2026-06-24"]), "new": rng.choice(on["2026-06-29"])}


def organic(papers: list[dict], reserved: set[str], rng: random.Random) -> list[dict]:
    pool = [p for p in papers if p["id"] not in reserved]
    popularity = {p["id"]: rng.lognormvariate(0.0, 1.5) * (8.0 if THEME.search(p["title"]) else 1.0) for p in pool}
    readers = [f"reader-{i:03d}" for i in range(1, 241)]
    activity = [rng.paretovariate(1.5) for _ in readers]
    events = []
    day = dt.date(2026, 6, 15)
    while day <= dt.date(2026, 6, 30):
        recent = [p for p in pool if dt.timedelta(0) <= day - p["listed"] < dt.timedelta(days=7)]
        weights = [popularity[p["id"]] * 0.5 ** ((day - p["listed"]).days / 1.5) for p in recent]
        active = set(rng.choices(readers, weights=activity, k=40))
        for reader in sorted(active):
            reads = {p["id"] for p in rng.choices(recent, weights=weights, k=1 + int(rng.expovariate(1 / 3)))}
            for paper in sorted(reads):
                pop = popularity[paper]
                seen = at_time(day, rng.uniform(6, 23.5))
                events.append(event(seen, reader, paper, "view"))
                if rng.random() < 0.15:  # came back to it later that day
                    events.append(event(seen + dt.timedelta(minutes=rng.randint(5, 25)), reader, paper, "view"))
                if rng.random() < 0.4 * pop / (pop + 2):
                    events.append(event(seen + dt.timedelta(seconds=rng.randint(20, 600)), reader, paper, "upvote"))
                    if rng.random() < 0.35:
                        events.append(event(seen + dt.timedelta(seconds=rng.randint(30, 700)), reader, paper, "save"))
                elif rng.random() < 0.08 * 2 / (pop + 2):
                    events.append(event(seen + dt.timedelta(seconds=rng.randint(5, 60)), reader, paper, "dismiss"))
        day += dt.timedelta(days=1)
    return events


def repeat_voter(r: dict[str, str]) -> list[dict]:
    day = dt.date(2026, 6, 30)
    events = [event(at_time(day, 9), "mallory", r["repeated"], "view")]
    events += [event(at_time(day, 9) + dt.timedelta(seconds=7 * (i + 1)), "mallory", r["repeated"], "upvote")
               for i in range(200)]
    events += [event(at_time(day, 10) + dt.timedelta(seconds=2 * i), "viewbot", r["viewbot"], "view") for i in range(300)]
    for i, hour in enumerate((8.25, 13.5, 18.75), 1):
        events += [event(at_time(day, hour), f"honest-{i}", r["honest"], "view"),
                   event(at_time(day, hour + 0.05), f"honest-{i}", r["honest"], "upvote")]
    events += [event(at_time(day, 15), "dora", r["single"], "view"), event(at_time(day, 15.1), "dora", r["single"], "upvote")]
    return events


def old_vs_new(r: dict[str, str]) -> list[dict]:
    old_day, d29, d30 = dt.date(2026, 6, 24), dt.date(2026, 6, 29), dt.date(2026, 6, 30)
    events = []
    for i in range(15):  # 15 view it on its day, the first 8 upvote
        seen = at_time(old_day, 7 + i)
        events.append(event(seen, f"early-{i + 1:02d}", r["old"], "view"))
        if i < 8:
            events.append(event(seen + dt.timedelta(minutes=3), f"early-{i + 1:02d}", r["old"], "upvote"))
    plan = [(d29, 15, True), (d29, 17, False), (d29, 20, False),  # 29th: 3 viewers, 1 upvote
            (d30, 8, True), (d30, 11, True), (d30, 16, True), (d30, 20, True), (d30, 21, False)]
    for i, (day, hour, votes) in enumerate(plan, 1):
        events.append(event(at_time(day, hour), f"late-{i:02d}", r["new"], "view"))
        if votes:
            events.append(event(at_time(day, hour + 0.1), f"late-{i:02d}", r["new"], "upvote"))
    return events


def write(name: str, events: list[dict]) -> None:
    events.sort(key=lambda e: (e["at"], e["user"], e["paper"], e["kind"]))
    with open(OUT / name, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
    print(f"{name}: {len(events)} events")


def main() -> None:
    rng = random.Random(SEED)
    papers = load_sample()
    reserved = pick_reserved(papers, rng)
    print("papers by role:", reserved)
    write("organic.jsonl", organic(papers, set(reserved.values()), rng))
    write("repeat_voter.jsonl", repeat_voter(reserved))
    write("old_vs_new.jsonl", old_vs_new(reserved))


if __name__ == "__main__":
    main()
