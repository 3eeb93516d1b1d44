"""Mailers: what hands a finished email to the world. A small protocol with two implementations and
a factory (design.md, principle 3): SMTPMailer (STARTTLS, implicit TLS or plain, with a log-in) and
FileMailer, which writes each message as an .eml file, for previews and development.

A failure is a MailError that says whether trying again later may help (`temporary`: a connection
refused or cut, a 4xx reply) and whether it concerns the whole server (`server`: nothing else will
get through either) or just this message's recipient (a 5xx for one mailbox). The sending run
(send.py) decides from that whether to retry, record the failure, or stop.

The SMTP password is used for the log-in and nowhere else: it is in no message, log line or repr.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from papersift.errors import ConfigError, PapersiftError

SECURITY = ("starttls", "ssl", "none")


class MailError(PapersiftError):
    status = 502
    hint = "Check the smtp_* settings (`papersift config show`) and that the mail server is up; rerunning resumes."
    temporary = False

    def __init__(self, message: str, *, server: bool, hint: str | None = None, code: int | None = None):
        super().__init__(message, hint=hint)
        self.server = server  # the whole server is unusable, not just this recipient
        self.code = code


class TemporaryMailError(MailError):
    """Trying again later may work: a connection refused, cut or timed out, a 4xx reply."""

    temporary = True


class PermanentMailError(MailError):
    """Trying again will not help: a 5xx reply, a refused log-in, TLS that cannot be set up."""


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Hand over one message; returns once the other side has taken it, raises MailError if not."""
        ...

    def close(self) -> None: ...


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass


class SMTPMailer(_Closing):
    """Sends through an SMTP server, keeping one connection open across messages (checked with NOOP
    before reuse). `security`: "starttls" (upgrade a plain connection, refusing to go on without it),
    "ssl" (TLS from the first byte, usually port 465) or "none"."""

    def __init__(self, host: str, port: int = 587, security: str = "starttls", user: str | None = None,
                 password: str | None = None, *, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None):
        if security not in SECURITY:
            raise ConfigError(f"smtp_security must be one of {', '.join(SECURITY)}, not {security!r}")
        self.host, self.port, self.security, self.user = host, int(port), security, user
        self._password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        return f"SMTPMailer({self.host!r}, {self.port}, {self.security!r}, user={self.user!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        if self.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname,
                                                  timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                # raises SMTPNotSupportedError when the server does not offer it: never fall back to plain text
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            try:
                if self._smtp.noop()[0] == 250:
                    return self._smtp
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._smtp = self._connect()
        return self._smtp

    def send(self, message: EmailMessage) -> None:
        try:
            self._connection().send_message(message)
        except Exception as e:  # every failure is classified; the connection starts afresh after one
            self._drop()
            raise self._classify(e) from None

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def close(self) -> None:
        self._drop()

    def _classify(self, e: Exception) -> MailError:
        where = self.where
        if isinstance(e, smtplib.SMTPAuthenticationError):
            # the server's reply is left out: it is the answer to our credentials
            return PermanentMailError(f"the mail server {where} refused the log-in of {self.user!r} ({e.smtp_code})",
                                      server=True, code=e.smtp_code, hint="check smtp_user and smtp_password")
        if isinstance(e, smtplib.SMTPNotSupportedError):
            return PermanentMailError(f"the mail server {where} does not offer what smtp_security={self.security} "
                                      f"needs: {_text(e)}", server=True,
                                      hint="check smtp_security and smtp_port (587: starttls, 465: ssl)")
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(e.recipients.values()), (0, b""))
            return _by_code(code, f"the mail server {where} refused the recipient: {code} {_text(reply)}", server=code == 421)
        if isinstance(e, smtplib.SMTPSenderRefused):
            return _by_code(e.smtp_code, f"the mail server {where} refused the sender {e.sender!r}: "
                            f"{e.smtp_code} {_text(e.smtp_error)}", server=True, hint="check mail_from")
        if isinstance(e, smtplib.SMTPResponseException):  # DATA, HELO, the greeting
            server = e.smtp_code == 421 or not isinstance(e, smtplib.SMTPDataError)
            return _by_code(e.smtp_code, f"the mail server {where} answered {e.smtp_code} {_text(e.smtp_error)}",
                            server=server)
        if isinstance(e, ssl.SSLError):  # before OSError: a certificate or protocol mismatch does not heal
            return PermanentMailError(f"no TLS with the mail server {where}: {e.reason or e}", server=True,
                                      hint="check smtp_security and smtp_port (587: starttls, 465: ssl) and the "
                                           "server's certificate")
        if isinstance(e, (smtplib.SMTPException, OSError)):  # refused, cut, timed out, unknown host
            reason = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or type(e).__name__)
            return TemporaryMailError(f"cannot reach the mail server {where}: {reason}", server=True)
        return PermanentMailError(f"cannot send through {where}: {type(e).__name__}: {e}", server=True)


def _text(reply) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]


def _by_code(code: int, message: str, *, server: bool, hint: str | None = None) -> MailError:
    if 400 <= code < 500:
        return TemporaryMailError(message, server=server, code=code, hint=hint)
    return PermanentMailError(message, server=server, code=code, hint=hint)


class FileMailer(_Closing):
    """Writes each message to `folder` as an .eml file (open it in any mail program): for previews, and
    for trying papersift without a mail server. The file appears whole or not at all."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.sent: list[Path] = []

    def __repr__(self) -> str:
        return f"FileMailer({str(self.folder)!r})"

    def send(self, message: EmailMessage) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stem = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{len(self.sent) + 1:04d}-"
            stem += safe_name(message.get("Message-ID") or message.get("To") or "message")
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(message.as_bytes())
            path = self.folder / (stem + ".eml")
            os.replace(tmp, path)
        except OSError as e:
            raise PermanentMailError(f"cannot write the email to {self.folder}: {e.strerror}", server=True) from None
        self.sent.append(path)


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:120] or "message"


def open_mailer(settings, folder: str | os.PathLike | None = None) -> Mailer:
    """The mailer the settings describe: SMTP from smtp_*; a FileMailer writing to `folder` when given."""
    if folder is not None:
        return FileMailer(folder)
    if not settings.smtp_host:
        raise ConfigError("mail is not configured: smtp_host is not set",
                          hint="set PAPERSIFT_SMTP_HOST (with smtp_user and smtp_password if the server wants a "
                               "log-in), or write the emails to a folder to look at them")
    return SMTPMailer(settings.smtp_host, settings.smtp_port, settings.smtp_security, settings.smtp_user,
                      settings.smtp_password, timeout=float(settings.http_timeout))
