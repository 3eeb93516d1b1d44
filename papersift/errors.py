"""The PapersiftError tree. Each class has an HTTP-like `.status` and a `.hint` that says how to fix it.

The core raises these; the edges translate them: the CLI prints `error: …` and the hint and exits 1,
the web answers the JSON error shape or error.html with `.status`.
"""

from __future__ import annotations


class PapersiftError(Exception):
    status = 500
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(PapersiftError):
    status = 500
    hint = "Check `papersift config show` and the PAPERSIFT_* environment variables."


class NotFound(PapersiftError):
    status = 404
    hint = "Check the id; `papersift stats` shows what the catalog holds."


class BadInput(PapersiftError):
    status = 400
    hint = "See `papersift --help` for the accepted forms."


class Conflict(PapersiftError):
    status = 409


class Unauthorized(PapersiftError):
    status = 401
    hint = "Log in, or send an API token as `Authorization: Bearer <token>` (make one on your account page)."


class Forbidden(PapersiftError):
    status = 403
    hint = "Reload the page and try again."


class TooManyRequests(PapersiftError):
    status = 429
    hint = "Wait a minute and try again."


class SourceError(PapersiftError):
    """A source could not be read at all: a missing file, an unreachable server, an error reply."""

    status = 502
    hint = "Check the path or URL and your network; re-running resumes where the last run stopped."


class StoreError(PapersiftError):
    status = 500
    hint = "Run `papersift init` to create or upgrade the catalog."


class MissingExtra(PapersiftError):
    """An optional dependency is not installed; the message names the pip install that fixes it."""

    status = 501

    def __init__(self, package: str, extra: str, install: str | None = None):
        super().__init__(
            f"this needs the package {package!r}, which is not installed",
            hint=install or f"pip install 'papersift[{extra}]'",
        )
