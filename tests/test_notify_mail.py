"""Mailers against a real SMTP server on loopback (aiosmtpd): the Mailer contract for SMTPMailer and
FileMailer, STARTTLS and implicit TLS with a log-in, and how each SMTP failure is classified.

The SMTP server fixture (`smtp`, `smtp_server`, `Inbox`) is also used by test_notify_send.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from papersift.errors import ConfigError
from papersift.notify.mail import FileMailer, PermanentMailError, SMTPMailer, TemporaryMailError, open_mailer
from papersift.notify.render import Links, compose, parse_message
from papersift.settings import load_settings

PASSWORD = "s3cret-Pa55word-never-logged"


# -- a real SMTP server on loopback --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts. `data_replies` scripts the answers to
    the next DATA commands (e.g. "421 …"), `refuse` holds addresses whose RCPT gets a 550."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.data_replies: list[str] = []
        self.refuse: set[str] = set()
        self.port = 0
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self._lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            msg = message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=policy.default)
            msg["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
            self.messages.append(msg)
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


@contextlib.contextmanager
def smtp_server(port: int | None = None, inbox: Inbox | None = None, **kw):
    inbox = inbox or Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port(), **kw)
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp():
    with smtp_server() as inbox:
        yield inbox


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """(server context, client context trusting it) from a throwaway self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(d / "cert.pem", d / "key.pem")
    return server, ssl.create_default_context(cafile=str(d / "cert.pem"))


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"digest-bot" and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def message(to: str = "reader@example.org", n: int = 1) -> EmailMessage:
    links = Links("https://papers.example.org", "key")
    return compose(sender="papersift <digest@papers.example.org>", to=to, subject=f"Digest number {n} · ünïcode",
                   text=f"Plain text {n}, ünïcode\nhttps://papers.example.org/papers/2607.00001\n",
                   html=f"<p>HTML {n} &amp; ünïcode</p>", message_id=f"<digest.{n}@papers.example.org>",
                   date=dt.datetime(2026, 7, 2, 8, tzinfo=dt.timezone.utc), unsubscribe_url=links.unsubscribe(to))


def mailer(inbox: Inbox, **kw) -> SMTPMailer:
    kw.setdefault("security", "none")
    return SMTPMailer("127.0.0.1", inbox.port, timeout=5, local_hostname="localhost", **kw)


# -- the Mailer contract: every implementation delivers the message as it was ---------------------

@pytest.fixture(params=["smtp", "file"])
def delivered(request, tmp_path):
    """(mailer, a function returning what has arrived so far)."""
    if request.param == "smtp":
        with smtp_server() as inbox, mailer(inbox) as m:
            yield m, lambda: inbox.messages
    else:
        with FileMailer(tmp_path / "outbox") as m:
            yield m, lambda: [message_from_bytes(p.read_bytes(), policy=policy.default)
                              for p in sorted((tmp_path / "outbox").glob("*.eml"))]


def test_mailers_deliver_messages_unchanged(delivered):
    m, arrived = delivered
    sent = [message(n=1), message("other@example.org", n=2)]
    for msg in sent:
        m.send(parse_message(msg.as_bytes()))  # as the sending run does: from the bytes a claim stored
    got = arrived()
    assert [g["Message-ID"] for g in got] == ["<digest.1@papers.example.org>", "<digest.2@papers.example.org>"]
    for g, msg in zip(got, sent):
        assert (g["To"], g["Subject"], g["List-Unsubscribe"]) == (msg["To"], msg["Subject"], msg["List-Unsubscribe"])
        assert g["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert g.get_body(("plain",)).get_content() == msg.get_body(("plain",)).get_content()
        assert g.get_body(("html",)).get_content() == msg.get_body(("html",)).get_content()


# -- TLS and log-in ------------------------------------------------------------------------------

def test_starttls_with_login_and_the_password_is_never_shown(tls, caplog):
    server_ctx, client_ctx = tls
    caplog.set_level(logging.DEBUG)
    with smtp_server(tls_context=server_ctx, require_starttls=True, authenticator=authenticator,
                     auth_require_tls=True) as inbox:
        with mailer(inbox, security="starttls", user="digest-bot", password=PASSWORD, ssl_context=client_ctx) as m:
            m.send(message())
            m.send(message(n=2))  # the same connection, checked with NOOP
            assert PASSWORD not in repr(m) and PASSWORD not in str(vars(m).get("user"))
        assert len(inbox.messages) == 2
        with mailer(inbox, security="starttls", user="digest-bot", password="wrong " + PASSWORD,
                    ssl_context=client_ctx) as m:
            with pytest.raises(PermanentMailError) as e:
                m.send(message())
        assert e.value.server and "log-in" in e.value.message and "smtp_password" in e.value.hint
        assert PASSWORD not in e.value.message and PASSWORD not in repr(m)
    assert PASSWORD not in caplog.text


def test_starttls_never_falls_back_to_plain_text():
    with smtp_server() as inbox, mailer(inbox, security="starttls") as m:
        with pytest.raises(PermanentMailError) as e:
            m.send(message())
        assert e.value.server and "smtp_security" in e.value.hint
        assert inbox.messages == []


def test_implicit_tls_and_an_untrusted_certificate(tls):
    server_ctx, client_ctx = tls
    with smtp_server(ssl_context=server_ctx) as inbox:
        with mailer(inbox, security="ssl", ssl_context=client_ctx) as m:
            m.send(message())
        assert len(inbox.messages) == 1
        with mailer(inbox, security="ssl") as m:  # the system's trust store does not know this certificate
            with pytest.raises(PermanentMailError) as e:
                m.send(message())
        assert e.value.server and "TLS" in e.value.message


# -- what a failure means ------------------------------------------------------------------------

def test_nothing_listening_is_temporary_and_server_wide():
    m = SMTPMailer("127.0.0.1", free_port(), "none", timeout=5)
    with pytest.raises(TemporaryMailError) as e:
        m.send(message())
    assert e.value.server and "cannot reach" in e.value.message


def test_smtp_replies_are_classified_and_the_connection_recovers(smtp):
    smtp.data_replies = ["421 4.3.2 service shutting down", "451 4.3.0 try again later", "554 5.7.1 looks like spam"]
    smtp.refuse = {"gone@example.org"}
    with mailer(smtp) as m:
        with pytest.raises(TemporaryMailError) as e:
            m.send(message())
        assert e.value.server and e.value.code == 421
        with pytest.raises(TemporaryMailError) as e:
            m.send(message())
        assert not e.value.server and e.value.code == 451
        with pytest.raises(PermanentMailError) as e:
            m.send(message())
        assert not e.value.server and e.value.code == 554
        with pytest.raises(PermanentMailError) as e:
            m.send(message("gone@example.org"))
        assert not e.value.server and e.value.code == 550 and "no such mailbox" in e.value.message
        m.send(message(n=5))  # and the next one goes through
    assert [g["Message-ID"] for g in smtp.messages] == ["<digest.5@papers.example.org>"]


def test_open_mailer_from_settings(tmp_path):
    base = {"config_file": str(tmp_path / "none.toml")}
    with pytest.raises(ConfigError, match="smtp_host"):
        open_mailer(load_settings(base, environ={}))
    assert isinstance(open_mailer(load_settings(base, environ={}), folder=tmp_path), FileMailer)
    s = load_settings({**base, "smtp_host": "mail.example.org", "smtp_port": "465", "smtp_security": "ssl",
                       "smtp_user": "bot", "smtp_password": PASSWORD}, environ={})
    m = open_mailer(s)
    assert isinstance(m, SMTPMailer) and (m.host, m.port, m.security, m.user) == ("mail.example.org", 465, "ssl", "bot")
    assert PASSWORD not in repr(m)
    assert dict((r[0], r[1]) for r in s.show())["smtp_password"] == "****"
    with pytest.raises(ConfigError, match="smtp_security"):
        open_mailer(load_settings({**base, "smtp_host": "x", "smtp_security": "tls"}, environ={}))
