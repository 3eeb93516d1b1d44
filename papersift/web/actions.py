"""What a reader can change: accounts, sessions, marks on papers, collections, subscriptions, tokens.
Both the HTML forms (pages.py) and the JSON API (api.py) call these; only POST/DELETE handlers do."""

from __future__ import annotations

import re

from papersift.errors import BadInput, Conflict, NotFound, Unauthorized
from papersift.models import Paper, User
from papersift.web import auth
from papersift.web.site import Site

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$")
EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]+\.[^@\s<>\"]{2,}$")
MARKS = ("upvote", "save", "dismiss")
FREQUENCIES = ("daily", "weekly")
CATEGORY = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL.match(email):
        raise BadInput(f"{email!r} is not an email address")
    return email


def signup(site: Site, username: str, password: str, email: str = "", client: str = "") -> tuple[User, str]:
    """A new account, logged in: returns the user and the session token for the cookie."""
    site.signup_limit.hit(client)
    username = username.strip()
    if not USERNAME.match(username):
        raise BadInput("a username has 2–32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    email = check_email(email) if email.strip() else None
    user = site.store.create_user(username, email, auth.hash_password(password))
    return user, start_session(site, user)


def start_session(site: Site, user: User) -> str:
    token = auth.new_token()
    site.store.create_session(user.id, auth.token_hash(token), site.session_expiry())
    return token


def login(site: Site, username: str, password: str, client: str = "") -> tuple[User, str]:
    site.login_limit.hit(f"{client}|{username.strip().lower()}")
    try:
        user = site.store.get_user(username.strip())
    except NotFound:
        user = None
    ok, rehashed = auth.verify_password(site.store.get_password_hash(user.id) if user else None, password)
    if user is None or not ok:
        raise Unauthorized("wrong username or password", hint="usernames are not case-sensitive; passwords are")
    if rehashed:
        site.store.set_password_hash(user.id, rehashed)
    site.login_limit.reset(f"{client}|{username.strip().lower()}")
    return user, start_session(site, user)


def logout(site: Site, session_hash: str | None) -> None:
    if session_hash:
        site.store.delete_session(session_hash)


def mark(site: Site, user: User, ref: str, kind: str, on: bool) -> tuple[Paper, dict]:
    """Upvote/save/dismiss on or off; returns the paper and its fresh counts. Setting a mark that is
    already set changes nothing (one account, one vote)."""
    if kind not in MARKS:
        raise BadInput(f"unknown action {kind!r}", hint=f"one of {', '.join(MARKS)}")
    site.vote_limit.hit(str(user.id))
    paper = site.store.get_paper(ref)
    if on:
        site.store.add_interaction(user.id, paper.id, kind)
    else:
        site.store.remove_interaction(user.id, paper.id, kind)
    return paper, site.store.interaction_counts(paper.id)


def view(site: Site, user: User, ref: str) -> None:
    paper = site.store.get_paper(ref)
    site.store.add_interaction(user.id, paper.id, "view")


def create_collection(site: Site, user: User, name: str, description: str = "") -> int:
    name = name.strip()
    if len(name) > 100:
        raise BadInput("a collection name can have at most 100 characters")
    return site.store.create_collection(user.id, name, description.strip()[:1000])


def collect(site: Site, user: User, ref: str, collection_id: int | None = None, new_name: str = "",
            on: bool = True) -> tuple[Paper, int]:
    """Put a paper in one of the reader's collections (a new one when `new_name` is given), or take it out.
    Saving to a collection also saves the paper."""
    site.vote_limit.hit(str(user.id))
    paper = site.store.get_paper(ref)
    if new_name.strip():
        try:
            collection_id = create_collection(site, user, new_name)
        except Conflict:
            collection_id = next(c["id"] for c in site.store.collections(user.id) if c["name"] == new_name.strip())
    if collection_id is None:
        raise BadInput("choose a collection or name a new one")
    if on:
        site.store.add_to_collection(user.id, collection_id, paper.id)
        site.store.add_interaction(user.id, paper.id, "save")
    else:
        site.store.remove_from_collection(user.id, collection_id, paper.id)
    return paper, collection_id


def subscribe(site: Site, email: str, frequency: str, categories: list[str], user: User | None = None,
              client: str = ""):
    """Record a subscription as pending: it starts after the reader confirms from the email that
    `papersift update` sends (double opt-in); an active one only has its choices changed."""
    site.signup_limit.hit("subscribe|" + client)
    email = check_email(email)
    if frequency not in FREQUENCIES:
        raise BadInput(f"frequency {frequency!r} is not one of {', '.join(FREQUENCIES)}")
    cats = sorted({c.strip() for c in categories if c.strip()})
    bad = [c for c in cats if not CATEGORY.match(c)]
    if bad or len(cats) > 50:
        raise BadInput(f"not arXiv categories: {', '.join(bad[:5])}" if bad else "at most 50 categories")
    current = site.store.get_subscription(email)
    if current is not None and current.status == "active" and (user is None or user.id != current.user_id):
        return current  # only its owner changes an active subscription; others learn nothing from the reply
    sub = site.store.upsert_subscription(email, frequency, cats, user_id=user.id if user else None)
    if sub.status == "unsubscribed":
        site.store.set_subscription_status(email, "pending")
        sub = site.store.get_subscription(email)
    return sub


def create_token(site: Site, user: User, name: str) -> str:
    token = auth.new_token(auth.TOKEN_PREFIX)
    site.store.create_api_token(user.id, name, auth.token_hash(token))
    return token


def change_password(site: Site, user: User, old: str, new: str, keep_session: str | None) -> int:
    """A new password; every other session of the account ends. Returns how many ended."""
    ok, _ = auth.verify_password(site.store.get_password_hash(user.id), old)
    if not ok:
        raise Unauthorized("that is not your current password")
    site.store.set_password_hash(user.id, auth.hash_password(new))
    return site.store.delete_sessions(user.id, keep=keep_session)


def delete_account(site: Site, user: User, password: str) -> None:
    ok, _ = auth.verify_password(site.store.get_password_hash(user.id), password)
    if not ok:
        raise Unauthorized("that is not your password", hint="type your password to confirm")
    sub = site.store.get_subscription(user.email) if user.email else None
    if sub is not None:
        site.store.set_subscription_status(sub.email, "unsubscribed")
    site.store.delete_user(user.id)


def feed_change(site: Site, user: User, form: dict) -> str:
    """The feed's controls: mute/unmute, reset, seed from a collection, cold-start categories; returns
    which was done."""
    import datetime as dt

    what = str(form.get("action", ""))
    if what in ("mute", "unmute"):
        kind, value = str(form.get("kind", "")), str(form.get("value", ""))
        (site.store.mute if what == "mute" else site.store.unmute)(user.id, kind, value)
        return what
    if what == "reset":
        site.store.set_feed_settings(user.id, reset_at=dt.datetime.now(dt.timezone.utc), seed_collection=None)
        return what
    if what == "seed":
        raw = str(form.get("collection", ""))
        site.store.set_feed_settings(user.id, seed_collection=int(raw) if raw.isdigit() else None)
        return what
    if what == "categories":
        cats = str(form.get("categories", "")).replace(",", " ").split()
        bad = [c for c in cats if not CATEGORY.match(c)]
        if bad:
            raise BadInput(f"not arXiv categories: {', '.join(bad[:5])}")
        site.store.set_feed_settings(user.id, categories=cats[:50])
        return what
    raise BadInput(f"unknown feed action {what!r}")


def import_library(site: Site, user: User, text: str) -> dict:
    """A reader's exported library (BibTeX, RIS or CSL-JSON text, as Zotero/JabRef/BibDesk write it):
    its papers are merged into the catalog (matched by arXiv id, DOI or title) and saved for the
    reader, so their feed starts from it. Malformed entries are reported and skipped."""
    from papersift.ingest.bibtex import parse_bibtex, parse_csl_json, parse_ris
    from papersift.models import Problem

    text = text.strip()
    if not text:
        raise BadInput("paste a BibTeX, RIS or CSL-JSON export")
    parse = parse_csl_json if text[:1] in "[{" else parse_ris if text.startswith("TY  -") else parse_bibtex
    papers, problems = [], []
    for item in parse(text, source=f"import by {user.username}"):
        (problems if isinstance(item, Problem) else papers).append(item)
    if not papers and problems:
        raise BadInput(f"nothing could be read: {problems[0]}")
    site.store.upsert_papers(papers)
    saved, unmatched = 0, 0
    for p in papers:
        ref = p.arxiv_id or (f"doi:{p.doi}" if p.doi else None)
        found = site.store.find_paper(ref) if ref else None
        if found is None:
            unmatched += 1
            continue
        saved += site.store.add_interaction(user.id, found.id, "save")
    return {"read": len(papers), "saved": saved, "not_matched": unmatched, "problems": [str(x) for x in problems[:20]]}
