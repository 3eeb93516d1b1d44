"""The pages the emails link to: confirm a subscription (double opt-in) and unsubscribe.

Both links carry a token signed with papersift.signing (made by notify/render.py, which this module
may not import: the payloads are `{"id", "email"}` for "confirm", `{"email"}` for "unsubscribe").
GET only shows a page with a button; the POST acts (no state change on GET: link scanners and mail
previews follow links). The unsubscribe POST also answers RFC 8058 one-click requests: the mail
provider POSTs `List-Unsubscribe=One-Click` to the List-Unsubscribe URL with no cookie and no CSRF
token, so that path is in CSRF_EXEMPT and the signed token alone authorises it. Unsubscribing twice,
or with a token for a subscription that is gone, is not an error: the reader wants no mail, and gets none.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from papersift.errors import BadInput, NotFound
from papersift.signing import verify
from papersift.web.app import Ctx
from papersift.web.render import render

CONFIRM, UNSUBSCRIBE = "/subscribe/confirm", "/unsubscribe"
ONE_CLICK = "One-Click"


def _page(ctx: Ctx, template: str, status: int = 200, **context) -> Response:
    return render(ctx.site, ctx.request, ctx.viewer, template, context, status)


def _token(ctx: Ctx) -> str:
    return (ctx.f("token") or ctx.q("token") or "").strip()


def _payload(ctx: Ctx, purpose: str) -> tuple[str, dict]:
    token = _token(ctx)
    if not token:
        raise BadInput("this link has no token", hint="use the whole link from the email")
    payload = verify(ctx.site.key, purpose, token)
    if not isinstance(payload.get("email"), str):
        raise BadInput("this link is not valid", hint="use the link from your latest email")
    return token, payload


def _confirmable(ctx: Ctx):
    token, payload = _payload(ctx, "confirm")
    sub = ctx.site.store.get_subscription(payload["email"])
    if sub is None or sub.id != payload.get("id"):
        raise NotFound("this subscription no longer exists", hint="subscribe again to get a fresh link")
    return token, sub


def confirm_form(ctx: Ctx):
    token, sub = _confirmable(ctx)
    return _page(ctx, "digest_confirm.html", token=token, subscription=sub, done=sub.status == "active")


def confirm(ctx: Ctx):
    token, sub = _confirmable(ctx)
    if sub.status == "unsubscribed":
        raise BadInput("this subscription was cancelled after the link was sent",
                       hint="subscribe again to start it anew")
    if sub.status == "pending":
        ctx.site.store.set_subscription_status(sub.email, "active")
        sub = ctx.site.store.get_subscription(sub.email)
    return _page(ctx, "digest_confirm.html", token=token, subscription=sub, done=True)


def unsubscribe_form(ctx: Ctx):
    token, payload = _payload(ctx, "unsubscribe")
    sub = ctx.site.store.get_subscription(payload["email"])
    return _page(ctx, "digest_unsubscribe.html", token=token, email=payload["email"],
                 done=sub is None or sub.status == "unsubscribed")


def unsubscribe(ctx: Ctx):
    _, payload = _payload(ctx, "unsubscribe")
    sub = ctx.site.store.get_subscription(payload["email"])
    if sub is not None and sub.status != "unsubscribed":
        ctx.site.store.set_subscription_status(sub.email, "unsubscribed")
    if ctx.f("List-Unsubscribe") == ONE_CLICK:  # RFC 8058: a mail provider, not a browser
        return PlainTextResponse("unsubscribed\n")
    return _page(ctx, "digest_unsubscribe.html", token="", email=payload["email"], done=True)


GET, POST = ["GET"], ["POST"]
ROUTES = [
    (CONFIRM, confirm_form, GET), (CONFIRM, confirm, POST),
    (UNSUBSCRIBE, unsubscribe_form, GET), (UNSUBSCRIBE, unsubscribe, POST),
]
# POSTs authorised by the signed token in the link instead of a CSRF token (RFC 8058 one-click)
CSRF_EXEMPT = frozenset({UNSUBSCRIBE})
