"""Rendering emails: a digest or a confirmation request as a multipart/alternative message (plain
text and HTML) from templates in notify/templates. The HTML templates are autoescaped, so a paper's
title can never become markup (design.md, principle 11); the .txt ones are plain text, not escaped.

Links in the emails are signed with papersift.signing and checked by the web side
(web/digest_pages.py), which reads the same payloads: `{"email": …}` for "unsubscribe" (no expiry:
a link in a years-old digest still works) and `{"id": subscription id, "email": …}` for "confirm"
(expires after CONFIRM_DAYS).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import urllib.parse
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from jinja2 import Environment, PackageLoader, select_autoescape

from papersift.models import Paper
from papersift.notify.digest import Digest, DigestItem
from papersift.signing import sign

CONFIRM_DAYS = 7
CONFIRM_PATH = "/subscribe/confirm"
UNSUBSCRIBE_PATH = "/unsubscribe"
SUMMARY_CHARS = 300
SITE_NAME = "papersift"
# Header lines may run to RFC 5322's 998 characters: folded at 78, a List-Unsubscribe URL (no spaces
# to fold at) would come out as RFC 2047 encoded words, which mail providers do not read as a link.
# The bodies are encoded before this policy is set, under the default one (quoted-printable, 76 a line).
MAIL_POLICY = policy.default.clone(max_line_length=998)


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=PackageLoader("papersift.notify", "templates"),
                       autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",),
                                                    default_for_string=True, default=True),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


@dataclass(frozen=True)
class Links:
    """Absolute links into the site at `base_url`, tokens signed with `key` (signing.site_key)."""

    base_url: str
    key: str

    def site(self, path: str = "/") -> str:
        return self.base_url.rstrip("/") + path

    def paper(self, paper: Paper) -> str:
        # the same path as the web's paper_url (web/render.py), which notify may not import
        return self.site("/papers/" + urllib.parse.quote(paper.ref, safe="/.:"))

    def unsubscribe(self, email: str) -> str:
        token = sign(self.key, "unsubscribe", {"email": email})
        return self.site(UNSUBSCRIBE_PATH + "?" + urllib.parse.urlencode({"token": token}))

    def confirm(self, subscription_id: int, email: str, now: dt.datetime) -> str:
        token = sign(self.key, "confirm", {"id": subscription_id, "email": email}, ttl=CONFIRM_DAYS * 86400,
                     now=now.timestamp())
        return self.site(CONFIRM_PATH + "?" + urllib.parse.urlencode({"token": token}))


def message_id(key: str, subscription_id: int, kind: str, period: str, sender: str) -> str:
    """The Message-ID of one subscription's mail for one period: the same every time it is built, so a
    message resent after a crash is the same message to the receiving side, which may drop the copy.
    An HMAC rather than the bare ids: it tells nobody how many subscribers there are."""
    tag = hmac.new(key.encode(), f"{subscription_id}|{kind}|{period}".encode(), hashlib.sha256).hexdigest()[:20]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "papersift.localhost"
    return f"<{kind}.{period}.{tag}@{domain}>"


def _authors(paper: Paper, shown: int = 3) -> str:
    names = list(paper.authors)
    if len(names) > shown:
        return ", ".join(names[:shown]) + " et al."
    return ", ".join(names)


def _summary(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit] + " …"


def _item(item: DigestItem, links: Links) -> dict:
    p = item.paper
    return {"title": " ".join(p.title.split()), "url": links.paper(p), "authors": _authors(p),
            "category": p.primary_category or "", "reason": item.reason, "summary": _summary(p.abstract)}


def _day(day: dt.date | None) -> str:
    return f"{day.day} {day:%b %Y}" if day else ""


def digest_subject(digest: Digest) -> str:
    n = len(digest.items)
    when = f" for {_day(digest.through)}" if digest.through and digest.frequency == "daily" else (
        f", week to {_day(digest.through)}" if digest.through else "")
    return f"{SITE_NAME} {digest.frequency}: {n} new paper{'s' if n != 1 else ''}{when}"


def render_digest(digest: Digest, links: Links) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a digest."""
    subject = digest_subject(digest)
    sections = []
    if digest.picks:
        sections.append({"title": "Picked for you", "papers": [_item(i, links) for i in digest.picks]})
    if digest.trending:
        where = f" in {', '.join(digest.categories)}" if digest.categories else ""
        sections.append({"title": "Trending" + where, "papers": [_item(i, links) for i in digest.trending]})
    page = {"day": "/", "week": "/weekly", "month": "/monthly"}.get(digest.window, "/")
    more = links.site(page + (f"?date={digest.through.isoformat()}" if digest.through else ""))
    context = {"subject": subject, "site_name": SITE_NAME, "frequency": digest.frequency, "email": digest.email,
               "categories": list(digest.categories), "heading": subject.split(": ", 1)[-1],
               "sections": sections, "more_url": more, "home_url": links.site("/"),
               "manage_url": links.site("/subscribe"), "unsubscribe_url": links.unsubscribe(digest.email)}
    env = environment()
    return subject, env.get_template("digest.txt").render(context), env.get_template("digest.html").render(context)


def render_confirmation(subscription_id: int, email: str, frequency: str, categories: tuple[str, ...],
                        links: Links, now: dt.datetime) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of the email that asks a new subscriber to confirm (double opt-in)."""
    subject = f"Confirm your {SITE_NAME} {frequency} digest"
    context = {"subject": subject, "site_name": SITE_NAME, "frequency": frequency, "email": email,
               "categories": list(categories), "confirm_url": links.confirm(subscription_id, email, now),
               "confirm_days": CONFIRM_DAYS, "unsubscribe_url": links.unsubscribe(email)}
    env = environment()
    return subject, env.get_template("confirm.txt").render(context), env.get_template("confirm.html").render(context)


def compose(*, sender: str, to: str, subject: str, text: str, html: str, message_id: str, date: dt.datetime,
            unsubscribe_url: str | None = None) -> EmailMessage:
    """A multipart/alternative message: the plain-text part first, the HTML part (preferred) last. With
    `unsubscribe_url`, the RFC 8058 one-click headers that mail providers turn into an Unsubscribe button."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date if date.tzinfo else date.replace(tzinfo=dt.timezone.utc))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to a digest
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    msg.policy = MAIL_POLICY
    return msg


def parse_message(data: bytes) -> EmailMessage:
    """A message back from the bytes a claim stored, ready to send unchanged."""
    return message_from_bytes(data, policy=MAIL_POLICY)


def digest_message(digest: Digest, links: Links, *, subscription_id: int, sender: str, date: dt.datetime) -> EmailMessage:
    subject, text, html = render_digest(digest, links)
    return compose(sender=sender, to=digest.email, subject=subject, text=text, html=html, date=date,
                   message_id=message_id(links.key, subscription_id, "digest", digest.period, sender),
                   unsubscribe_url=links.unsubscribe(digest.email))


def confirmation_message(subscription_id: int, email: str, frequency: str, categories: tuple[str, ...], period: str,
                         links: Links, *, sender: str, date: dt.datetime) -> EmailMessage:
    subject, text, html = render_confirmation(subscription_id, email, frequency, categories, links, date)
    return compose(sender=sender, to=email, subject=subject, text=text, html=html, date=date,
                   message_id=message_id(links.key, subscription_id, "confirm", period, sender),
                   unsubscribe_url=links.unsubscribe(email))
