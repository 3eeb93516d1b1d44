"""Copy a whole catalog from one Store to another (`papersift db migrate-to postgresql://…`), then prove it.

Written against the Store protocol, so any direction works (SQLite → PostgreSQL is the usual one). Row ids
differ between two catalogs, so every reference travels as an identity: a paper as `Paper.key` (arXiv id,
DOI, title + first author), a reader as their username, a collection as (username, name), a subscription
as its email.

Resumable: the parts go in a fixed order and each skips what the target already holds. Papers resume from
a checkpoint committed with each batch (the target's own ingest checkpoints, keyed by the source; cleared
once a run reaches verification, so a later run re-upserts every paper, idempotently), vectors from the
target's list of papers still to embed, and readers' rows are looked for before they are written. A crash
(or Ctrl-C) and a rerun end as one clean run would, without duplicates.

Verified: at the end every part is counted and checksummed on both sides over a canonical form (ids
replaced by identities, timestamps as UTC text), and the report names the parts, and a few rows, that
differ. What the protocol cannot carry is listed in GAPS and in every report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from papersift.errors import NotFound, PapersiftError, StoreError
from papersift.models import Paper
from papersift.store.base import Store

Progress = Callable[[str, int, "int | None"], None]  # (part, done, total or None)

GAPS = (
    "log-in sessions: the protocol cannot list them (only look one up by its hash), so readers log in again",
    "API tokens: api_tokens() gives names, not hashes, so none is copied; readers make new ones",
    "the catalog's signing key (secret 'site-key') cannot be set through the protocol: the target makes a new "
    "one, so links signed before the copy (unsubscribe, confirm) stop working unless secret_key is set",
    "created_at of users, collections and subscriptions, collection items' added_at, a subscription's "
    "confirmed_at and papers' added_at/changed_at become the time of the copy (no setter in the protocol)",
    "ingest checkpoints and run history are not listable: the next harvest into the target starts from its "
    "configured start (upserts make that safe, only slower)",
    "mailings keep status, message, papers, claimed/sent times and error, not their attempt count or lease; "
    "an unfinished claim is released, so the next digest run resends it at once",
    "embeddings are stamped with the target paper's change_seq; a vector already stale in the source is "
    "copied as stale, so `papersift index` re-embeds it there too",
)


# -- the report ----------------------------------------------------------------------------------
@dataclass
class PartReport:
    """One part of the copy: what this run wrote, and how the two catalogs compare afterwards."""

    name: str
    copied: int = 0  # written to the target by this run
    skipped: int = 0  # already in the target (a rerun), left alone
    failed: int = 0  # could not be copied: see CopyReport.problems
    seconds: float = 0.0
    source_count: int | None = None
    target_count: int | None = None
    source_sha: str = ""
    target_sha: str = ""
    differences: list[str] = field(default_factory=list)  # a few rows that differ, never a secret

    @property
    def verified(self) -> bool:
        return self.source_count == self.target_count and self.source_sha == self.target_sha

    def as_dict(self) -> dict:
        return {"name": self.name, "copied": self.copied, "skipped": self.skipped, "failed": self.failed,
                "seconds": round(self.seconds, 3), "source_count": self.source_count,
                "target_count": self.target_count, "source_sha256": self.source_sha,
                "target_sha256": self.target_sha, "verified": self.verified, "differences": self.differences}


@dataclass
class CopyReport:
    parts: dict[str, PartReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # each thing not copied: what and why
    gaps: tuple[str, ...] = GAPS
    seconds: float = 0.0  # the whole run
    verify_seconds: float = 0.0  # of which counting and checksumming both sides
    verified: bool = False  # every part's count and checksum equal on both sides

    def part(self, name: str) -> PartReport:
        if name not in self.parts:
            self.parts[name] = PartReport(name)
        return self.parts[name]

    def as_dict(self) -> dict:
        return {"verified": self.verified, "seconds": round(self.seconds, 3), "verify_seconds": round(self.verify_seconds, 3),
                "parts": [p.as_dict() for p in self.parts.values()], "problems": self.problems,
                "gaps": list(self.gaps)}


# -- identities ----------------------------------------------------------------------------------
def _khash(key: str) -> int:
    """A paper identity as 64 bits: millions of them fit in two numpy arrays, not in a dict of strings."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _paper_hash(p: Paper) -> int:
    """A paper's content in canonical form, hashed. NUL characters are left out: PostgreSQL text cannot hold
    them, so its store drops them (postgres.py _without_nul), and that is no difference worth a failure."""
    row = [p.key, p.arxiv_id, p.version, p.doi, p.title, p.abstract or "", list(p.authors), list(p.categories),
           p.submitted, p.updated, p.listed, p.source, dict(p.links or {}), p.comment, p.journal_ref,
           bool(p.withdrawn), dict(p.signals or {}), p.raw]
    text = _json(row).replace("\\u0000", "")
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _utc(at) -> str | None:
    """A timestamp (ISO text or datetime; naive taken as UTC) as ISO UTC text to the second."""
    if at is None or at == "":
        return None
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def _when(at) -> dt.datetime | None:
    text = _utc(at)
    return dt.datetime.fromisoformat(text) if text else None


class _PaperIndex:
    """Every paper of one catalog as (row id, identity hash, content hash): maps ids across catalogs and
    checksums the papers, in ~24 bytes a paper."""

    def __init__(self, store: Store, batch: int):
        ids, keys, hashes = [], [], []
        for p in store.iter_papers(batch=batch):
            ids.append(p.id)
            keys.append(_khash(p.key))
            hashes.append(_paper_hash(p))
        order = np.argsort(np.array(ids, dtype=np.int64), kind="stable")
        self.ids = np.array(ids, dtype=np.int64)[order]
        self.keys = np.array(keys, dtype=np.uint64)[order]
        self.hashes = np.array(hashes, dtype=np.uint64)[order]
        self._by_key = np.argsort(self.keys, kind="stable")
        self._sorted_keys = self.keys[self._by_key]
        self.duplicates = int(len(self.keys) - len(np.unique(self.keys)))

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def _lookup(haystack: np.ndarray, needles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(haystack) or not len(needles):
            return np.zeros(len(needles), dtype=np.int64), np.zeros(len(needles), dtype=bool)
        pos = np.minimum(np.searchsorted(haystack, needles), len(haystack) - 1)
        return pos, haystack[pos] == needles

    def key_of(self, paper_ids: Iterable[int]) -> list[int | None]:
        pos, found = self._lookup(self.ids, np.fromiter(paper_ids, dtype=np.int64))
        return [int(self.keys[i]) if ok else None for i, ok in zip(pos, found)]

    def id_of(self, keys: Iterable[int | None]) -> list[int | None]:
        keys = list(keys)
        needles = np.array([k if k is not None else 0 for k in keys], dtype=np.uint64)
        pos, found = self._lookup(self._sorted_keys, needles)
        return [int(self.ids[self._by_key[i]]) if ok and k is not None else None
                for i, ok, k in zip(pos, found, keys)]

    def sha(self) -> str:
        pairs = np.stack([self.keys, self.hashes], axis=1)[self._by_key] if len(self) else np.zeros((0, 2), np.uint64)
        return hashlib.sha256(pairs.astype("<u8").tobytes()).hexdigest()


class _Map:
    """Source row ids → target row ids, for papers and readers."""

    def __init__(self, src: _PaperIndex, tgt: _PaperIndex):
        self.src, self.tgt = src, tgt
        self.users: dict[int, int] = {}

    def papers(self, source_ids: Iterable[int]) -> list[int | None]:
        return self.tgt.id_of(self.src.key_of(source_ids))


# -- what the Store protocol does not answer (yet) -----------------------------------------------
# Two facts a copy needs have no protocol method: every reader's id, and the length of a model's vectors
# (load_embeddings and friends must be told it). Both known backends are asked here directly (store/ is
# where SQL lives); another backend answers through `user_ids()` / `embedding_dim(model)` methods, the
# protocol additions this would rather use.
def _user_ids(store: Store) -> list[int]:
    if hasattr(store, "user_ids"):
        return list(store.user_ids())
    if hasattr(store, "_query"):  # PostgresStore
        return [r[0] for r in store._query("SELECT id FROM users ORDER BY id")]
    if hasattr(store, "conn"):  # SQLiteStore
        return [r[0] for r in store.conn.execute("SELECT id FROM users ORDER BY id")]
    raise StoreError(f"cannot list the readers of {type(store).__name__}", hint="give the store a user_ids() method")


def _embedding_dim(store: Store, model: str) -> int | None:
    if hasattr(store, "embedding_dim"):
        return store.embedding_dim(model)
    if hasattr(store, "_one"):  # PostgresStore
        row = store._one("SELECT vector_dims(vector) FROM embeddings WHERE model = %s LIMIT 1", (model,))
    elif hasattr(store, "conn"):  # SQLiteStore
        row = store.conn.execute("SELECT length(vector) / 4 FROM embeddings WHERE model = ? LIMIT 1", (model,)).fetchone()
    else:
        raise StoreError(f"cannot tell the vector length of {type(store).__name__}",
                         hint="give the store an embedding_dim(model) method")
    return int(row[0]) if row else None


# -- the copy ------------------------------------------------------------------------------------
def _checkpoint_key(source: Store) -> str:
    # the source's URL may hold a password: the key names it by a hash
    return "copy:" + hashlib.sha256(source.url.encode()).hexdigest()[:16]


def copy_catalog(source: Store, target: Store, *, batch: int = 2000, on_progress: Progress | None = None,
                 fulltext: bool = True) -> CopyReport:
    """Copy everything the protocol can carry from `source` into `target` (migrated, normally empty), then
    compare the two part by part. Safe to rerun after a crash: it resumes. With `fulltext`, the target's
    full-text index is brought up to date at the end, so search works at once."""
    started = time.monotonic()
    report = CopyReport()
    progress = on_progress or (lambda part, done, total: None)

    _copy_papers(source, target, batch, report, progress)
    t0 = time.monotonic()
    ids = _Map(_PaperIndex(source, batch), _PaperIndex(target, batch))
    papers = report.part("papers")
    papers.seconds += time.monotonic() - t0
    papers.skipped = max(0, len(ids.src) - papers.copied - papers.failed)  # incl. those before a resume point
    for name, ix in (("source", ids.src), ("target", ids.tgt)):
        if ix.duplicates:
            report.problems.append(f"{ix.duplicates} papers of the {name} share an identity with another")

    for model in sorted(source.embedding_models()):
        _timed(report, f"embeddings:{model}", _copy_embeddings, source, target, model, ids, batch, progress)
    _timed(report, "users", _copy_users, source, target, ids, progress)
    _timed(report, "interactions", _copy_interactions, source, target, ids, batch, progress)
    collections: dict[tuple[int, int], int] = {}
    _timed(report, "collections", _copy_collections, source, target, ids, collections, progress)
    _timed(report, "mutes", _copy_mutes, source, target, ids, progress)
    _timed(report, "feed_settings", _copy_feed_settings, source, target, ids, collections)
    subs: dict[int, int] = {}
    _timed(report, "subscriptions", _copy_subscriptions, source, target, ids, subs, progress)
    _timed(report, "mailings", _copy_mailings, source, target, ids, subs, progress)

    tokens = sum(len(source.api_tokens(uid)) for uid in ids.users)
    if tokens:
        report.problems.append(f"{tokens} API tokens not copied (the protocol keeps their hashes to itself): "
                               "their owners make new ones")
    if fulltext:
        t0 = time.monotonic()
        progress("fulltext", 0, None)
        part = report.part("fulltext")
        part.copied = target.sync_fulltext()
        part.source_count = part.target_count = None  # nothing to compare: the target's own index
        part.seconds = time.monotonic() - t0

    verify_catalog(source, target, batch=batch, report=report, ids=ids, on_progress=progress)
    # The checkpoint lets a run that crashed mid-way skip the papers it had done. A run that got this far
    # needs it no more, and a later run (after fixing what verification found, say) must see every paper.
    target.clear_checkpoint(_checkpoint_key(source))
    report.seconds = time.monotonic() - started
    return report


def _timed(report: CopyReport, name: str, fn, *args) -> None:
    t0 = time.monotonic()
    part = report.part(name)
    fn(*args[:2], part, report.problems, *args[2:])
    part.seconds += time.monotonic() - t0


def _copy_papers(source: Store, target: Store, batch: int, report: CopyReport, progress: Progress) -> None:
    """Papers in source-id order, each batch committed with its checkpoint: a rerun starts after the last."""
    t0 = time.monotonic()
    part = report.part("papers")
    key = _checkpoint_key(source)
    position = target.get_checkpoint(key)
    after = int(position) if position and position.isdigit() else 0
    total = source.count_papers() if not after else None  # resumed: how many are left is not known
    done = 0
    chunk: list[Paper] = []

    def flush() -> None:
        nonlocal done
        last = chunk[-1].id
        try:
            result = target.upsert_papers(chunk, checkpoint=(key, str(last)))
        except PapersiftError:
            # one bad paper must not sink its batch: redo it paper by paper, report the ones that fail
            result = None
            for p in chunk:
                try:
                    r = target.upsert_papers([p])
                except PapersiftError as e:
                    part.failed += 1
                    report.problems.append(f"paper {p.ref} ({p.key}): {e}")
                    continue
                part.copied += r.added + r.updated
                part.skipped += r.unchanged
            target.upsert_papers([], checkpoint=(key, str(last)))
        if result is not None:
            part.copied += result.added + result.updated
            part.skipped += result.unchanged
        done += len(chunk)
        chunk.clear()
        progress("papers", done, total)

    for paper in source.iter_papers(after_id=after, batch=batch):
        chunk.append(paper)
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    part.seconds += time.monotonic() - t0


def _copy_embeddings(source: Store, target: Store, part: PartReport, problems: list[str], model: str,
                     ids: _Map, batch: int, progress: Progress) -> None:
    """The vectors the target still lacks (its own papers_to_embed list), looked up in the source by identity.
    A vector stays as fresh as it was: current in the source → stamped with the target paper's change_seq."""
    dim = _embedding_dim(source, model)
    if dim is None:
        return
    stale: set[int] = set()  # source papers whose vector is older than the paper (or missing)
    after = (0, 0)
    while rows := source.papers_to_embed(model, batch, after):
        stale.update(r[0] for r in rows)
        after = (rows[-1][1], rows[-1][0])
    total = source.embedding_models().get(model, 0)
    part.skipped = target.embedding_models().get(model, 0)
    after = (0, 0)
    while rows := target.papers_to_embed(model, batch, after):
        after = (rows[-1][1], rows[-1][0])
        seq = {r[0]: r[1] for r in rows}
        to_target = {s: t for s, t in zip(ids.src.id_of(ids.tgt.key_of(seq)), seq) if s is not None}
        found, vectors = source.paper_embeddings(model, list(to_target), dim)
        if len(found):
            target.save_embeddings(model, [(to_target[int(s)], 0 if int(s) in stale else seq[to_target[int(s)]])
                                           for s in found], vectors)
        part.copied += len(found)
        progress(f"embeddings:{model}", part.copied + part.skipped, total)


def _copy_users(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                progress: Progress) -> None:
    """Readers by username, with their password hashes (argon2: they log in with the same password)."""
    uids = _user_ids(source)
    for n, uid in enumerate(uids, 1):
        user = source.get_user(uid)
        try:
            ids.users[uid] = target.get_user(user.username).id
            part.skipped += 1
            continue
        except NotFound:
            pass
        try:
            ids.users[uid] = target.create_user(user.username, user.email, source.get_password_hash(uid)).id
            part.copied += 1
        except PapersiftError as e:
            part.failed += 1
            problems.append(f"user {user.username!r}: {e}")
        progress("users", n, len(uids))


def _copy_interactions(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                       batch: int, progress: Progress) -> None:
    """Every interaction with its time. Views repeat, so what the target holds is counted, not just looked up."""
    rows = source.interactions()
    papers = ids.papers(r[1] for r in rows)
    have = Counter((u, p, k, _utc(at)) for u, p, k, at in target.interactions())
    for n, ((uid, pid, kind, at), tpid) in enumerate(zip(rows, papers), 1):
        tuid = ids.users.get(uid)
        if tuid is None or tpid is None:
            part.failed += 1
            problems.append(f"interaction {kind} of user #{uid} on paper #{pid} at {at}: "
                            f"its {'reader' if tuid is None else 'paper'} was not copied")
            continue
        row = (tuid, tpid, kind, _utc(at))
        if have[row] > 0:
            have[row] -= 1
            part.skipped += 1
        elif target.add_interaction(tuid, tpid, kind, _when(at)):
            part.copied += 1
        else:
            part.skipped += 1  # a state (save, upvote, dismiss) the reader already has, at another time
        if n % batch == 0:
            progress("interactions", n, len(rows))
    progress("interactions", len(rows), len(rows))


def _copy_collections(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                      collections: dict[tuple[int, int], int], progress: Progress) -> None:
    """Collections by (reader, name), then their papers, oldest addition first (the order they show in)."""
    items = 0
    for uid, tuid in ids.users.items():
        existing = {c["name"]: c["id"] for c in target.collections(tuid)}
        for c in source.collections(uid):
            if c["name"] in existing:
                tcid = existing[c["name"]]
                part.skipped += 1
            else:
                tcid = target.create_collection(tuid, c["name"], c["description"] or "")
                part.copied += 1
            collections[(uid, c["id"])] = tcid
            papers = source.collection_papers(uid, c["id"])
            have = {p.id for p in target.collection_papers(tuid, tcid)}
            for p, tpid in zip(reversed(papers), ids.papers(p.id for p in reversed(papers))):
                if tpid is None:
                    part.failed += 1
                    problems.append(f"collection {c['name']!r} of user #{uid}: paper {p.ref} was not copied")
                elif tpid not in have:
                    target.add_to_collection(tuid, tcid, tpid)
                    items += 1
            progress("collections", part.copied + part.skipped, None)
    part.copied += items  # collections made + papers added


def _copy_mutes(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                progress: Progress) -> None:
    for uid, tuid in ids.users.items():
        for kind, values in source.mutes(uid).items():
            for value in values:
                if target.mute(tuid, kind, value):
                    part.copied += 1
                else:
                    part.skipped += 1


def _copy_feed_settings(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                        collections: dict[tuple[int, int], int]) -> None:
    for uid, tuid in ids.users.items():
        s = source.feed_settings(uid)
        if not (s["reset_at"] or s["seed_collection"] or s["categories"]):
            continue
        seed = collections.get((uid, s["seed_collection"])) if s["seed_collection"] else None
        if s["seed_collection"] and seed is None:
            problems.append(f"feed of user #{uid}: its seed collection was not copied")
        want = (_utc(s["reset_at"]), seed, sorted(s["categories"]))
        have = target.feed_settings(tuid)
        if (_utc(have["reset_at"]), have["seed_collection"], sorted(have["categories"])) == want:
            part.skipped += 1
            continue
        target.set_feed_settings(tuid, reset_at=_when(s["reset_at"]), seed_collection=seed,
                                 categories=s["categories"])
        part.copied += 1


def _copy_subscriptions(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                        subs: dict[int, int], progress: Progress) -> None:
    for sub in source.subscriptions():
        tuid = ids.users.get(sub.user_id) if sub.user_id is not None else None
        found = target.get_subscription(sub.email)
        if found is None:
            try:
                found = target.upsert_subscription(sub.email, sub.frequency, sub.categories, tuid, "pending")
            except PapersiftError as e:
                part.failed += 1
                problems.append(f"subscription {sub.email}: {e}")
                continue
            part.copied += 1
        else:
            part.skipped += 1
        if found.status != sub.status:
            target.set_subscription_status(sub.email, sub.status)  # active: confirmed_at set (to now)
        subs[sub.id] = found.id


def _copy_mailings(source: Store, target: Store, part: PartReport, problems: list[str], ids: _Map,
                   subs: dict[int, int], progress: Progress) -> None:
    """Replayed through claim → finish (or release), oldest first, so a digest's sent time also becomes the
    subscription's last_sent_at, which decides where its next digest starts."""
    owner = "papersift-copy"
    for sid, tsid in subs.items():
        for m in reversed(source.mailings(sid)):
            kind, period, status = m["kind"], m["period"], m["status"]
            have = target.get_mailing(tsid, kind, period)
            if have is None:
                message = (source.get_mailing(sid, kind, period) or {}).get("message") if status == "claimed" else None
                papers = ids.papers(m["paper_ids"])
                if None in papers:
                    # a mailing cannot be amended once written: left for a rerun that has all its papers
                    part.failed += 1
                    problems.append(f"mailing {kind} {period} of subscription #{sid} not copied: "
                                    f"{papers.count(None)} of its papers are not in the target")
                    continue
                claimed = _when(m["claimed_at"]) or dt.datetime.now(dt.timezone.utc)
                have = target.claim_mailing(
                    tsid, kind, period, owner, now=claimed, lease_until=claimed, message_id=m["message_id"],
                    message=message or b"", paper_ids=papers,
                    through=dt.date.fromisoformat(m["through"]) if m["through"] else None)
                if have is None:
                    part.failed += 1
                    problems.append(f"mailing {kind} {period} of subscription #{sid}: the target refused the claim")
                    continue
                part.copied += 1
            elif have["status"] == status:
                part.skipped += 1
                continue
            if status in ("sent", "failed") and have["status"] == "claimed":
                target.finish_mailing(tsid, kind, period, status, _when(m["sent_at"] or m["claimed_at"]), m["error"])
            elif status == "claimed" and have.get("owner") == owner:
                target.release_mailing(tsid, kind, period, owner, _when(m["lease_until"] or m["claimed_at"]),
                                       m["error"])


# -- verification ---------------------------------------------------------------------------------
def _reader_rows(store: Store, ix: _PaperIndex) -> dict[str, list[tuple]]:
    """Each reader-side part of one catalog as canonical rows: identities instead of row ids, UTC times."""
    users = {uid: store.get_user(uid) for uid in _user_ids(store)}
    name = {uid: u.username for uid, u in users.items()}
    out: dict[str, list[tuple]] = {k: [] for k in ("users", "interactions", "collections", "collection_items",
                                                   "mutes", "feed_settings", "subscriptions", "mailings")}
    for uid, u in users.items():
        out["users"].append((u.username, u.email, store.get_password_hash(uid)))
        cnames = {}
        for c in store.collections(uid):
            cnames[c["id"]] = c["name"]
            out["collections"].append((u.username, c["name"], c["description"] or ""))
            papers = store.collection_papers(uid, c["id"])
            out["collection_items"] += [(u.username, c["name"], k) for k in ix.key_of(p.id for p in papers)]
        for kind, values in store.mutes(uid).items():
            out["mutes"] += [(u.username, kind, v) for v in values]
        s = store.feed_settings(uid)
        if s["reset_at"] or s["seed_collection"] or s["categories"]:
            out["feed_settings"].append((u.username, _utc(s["reset_at"]), cnames.get(s["seed_collection"]),
                                         sorted(s["categories"])))
    rows = store.interactions()
    out["interactions"] = [(name.get(u), k, kind, _utc(at))
                           for (u, _, kind, at), k in zip(rows, ix.key_of(r[1] for r in rows))]
    for sub in store.subscriptions():
        out["subscriptions"].append((sub.email, sub.frequency, sorted(sub.categories), sub.status,
                                     name.get(sub.user_id)))
        for m in store.mailings(sub.id):
            out["mailings"].append((sub.email, m["kind"], m["period"], m["status"], m["message_id"],
                                    sorted(k or 0 for k in ix.key_of(m["paper_ids"])), m["through"],
                                    _utc(m["claimed_at"]), _utc(m["sent_at"]), m["error"]))
    return out


def _digest(lines: list[str]) -> str:
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def _compare(part: PartReport, src: list[tuple], tgt: list[tuple], show: int) -> None:
    a, b = [_json(r) for r in src], [_json(r) for r in tgt]
    part.source_count, part.target_count = len(a), len(b)
    part.source_sha, part.target_sha = _digest(a), _digest(b)
    if part.verified:
        return
    only_a, only_b = Counter(a) - Counter(b), Counter(b) - Counter(a)
    # a row is shown by its first `show` fields: never a password hash
    part.differences = ([f"only in source: {_json(json.loads(r)[:show])}" for r in list(only_a)[:3]]
                        + [f"only in target: {_json(json.loads(r)[:show])}" for r in list(only_b)[:3]])


def _vector_rows(store: Store, ix: _PaperIndex, model: str, dim: int, batch: int) -> list[tuple]:
    out = []
    for i in range(0, len(ix), batch):
        found, vectors = store.paper_embeddings(model, ix.ids[i:i + batch].tolist(), dim)
        keys = ix.key_of(found.tolist())
        out += [(k, hashlib.blake2b(np.ascontiguousarray(v, dtype="<f4").tobytes(), digest_size=16).hexdigest())
                for k, v in zip(keys, vectors)]
    return out


def verify_catalog(source: Store, target: Store, *, batch: int = 2000, report: CopyReport | None = None,
                   ids: _Map | None = None, on_progress: Progress | None = None) -> CopyReport:
    """Count and checksum every part on both sides; `report.verified` is True when all agree. Papers compare
    by identity and content, vectors bit for bit, readers' rows by username, paper identity and UTC time."""
    started = time.monotonic()
    report = report or CopyReport()
    progress = on_progress or (lambda part, done, total: None)
    progress("verify", 0, None)
    if ids is None:
        ids = _Map(_PaperIndex(source, batch), _PaperIndex(target, batch))
    papers = report.part("papers")
    papers.source_count, papers.target_count = len(ids.src), len(ids.tgt)
    papers.source_sha, papers.target_sha = ids.src.sha(), ids.tgt.sha()
    if not papers.verified:
        a = set(zip(ids.src.keys.tolist(), ids.src.hashes.tolist()))
        b = set(zip(ids.tgt.keys.tolist(), ids.tgt.hashes.tolist()))
        missing = ids.src.id_of(k for k, _ in list(a - b)[:3])
        extra = ids.tgt.id_of(k for k, _ in list(b - a)[:3])
        papers.differences = ([f"differs or missing in target: {p.ref}" for p in source.get_papers(missing)]
                              + [f"differs or extra in target: {p.ref}" for p in target.get_papers(extra)])

    models = sorted(set(source.embedding_models()) | set(target.embedding_models()))
    for model in models:
        part = report.part(f"embeddings:{model}")
        dim = _embedding_dim(source, model) or _embedding_dim(target, model)
        _compare(part, _vector_rows(source, ids.src, model, dim, batch), _vector_rows(target, ids.tgt, model, dim, batch), 1)

    src_rows, tgt_rows = _reader_rows(source, ids.src), _reader_rows(target, ids.tgt)
    for name in src_rows:
        _compare(report.part(name), src_rows[name], tgt_rows[name], 1 if name == "users" else 3)
    report.verified = all(p.verified for p in report.parts.values()) and not any(p.failed for p in report.parts.values())
    report.verify_seconds = time.monotonic() - started
    return report
