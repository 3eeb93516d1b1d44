"""Every setting, declared once as data: name, default, help.

Precedence: CLI flag > PAPERSIFT_<NAME> environment variable > papersift.toml > default.
`papersift config show` prints them with secrets masked; a test fails if one is missing from the README.
Nothing is read at import time: `load_settings()` builds a Settings when asked.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from papersift.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "PAPERSIFT_" + self.name.upper()


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "papersift")


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", None, "Folder for the catalog and its indexes (default: $XDG_DATA_HOME/papersift)."),
    Setting("database_url", None, "Catalog location: a SQLite path or sqlite:/// URL "
            "(default: <data_dir>/catalog.db); postgresql://… for PostgreSQL."),
    Setting("config_file", "papersift.toml", "TOML file with settings (keys as in this table)."),
    Setting("batch_size", 2000, "Papers per ingest transaction; each committed batch is a resume point."),
    Setting("http_timeout", 60.0, "Seconds before a request to a source gives up."),
    Setting("http_delay", 3.0, "Seconds between requests to arXiv (its rate limit asks for 3)."),
    Setting("http_retries", 5, "Retries of a request answered 429/503 or cut off, honouring Retry-After."),
    Setting("user_agent", "papersift/0.1 (self-hosted paper discovery)", "User-Agent sent to sources."),
    Setting("oai_url", "https://oaipmh.arxiv.org/oai", "arXiv OAI-PMH endpoint."),
    Setting("arxiv_api_url", "https://export.arxiv.org/api/query", "arXiv API endpoint."),
    Setting("arxiv_rss_url", "https://rss.arxiv.org/rss/", "arXiv announcement RSS base URL."),
    Setting("hf_daily_url", "https://huggingface.co/api/daily_papers", "Hugging Face daily papers API."),
    Setting("embedder", "minilm", "Embedding model: minilm (int8 ONNX, default), minilm-fp32, static (fast tier "
            "distilled from MiniLM; static:128 / static:384 for other sizes), "
            "or <OpenAI-compatible base URL>|<model> for a model served elsewhere."),
    Setting("embedder_api_key", None, "API key for an HTTP embedder.", secret=True),
    Setting("update_sources", "arxiv-rss:cs.AI+cs.CL+cs.CV+cs.LG hf-daily", "What `papersift update` fetches: "
            "space-separated source:target pairs, as `papersift ingest <source> <target>` takes them."),
    Setting("secret_key", None, "Key that signs CSRF tokens and unsubscribe links (default: a random key "
            "made once and kept in the catalog).", secret=True),
    Setting("base_url", None, "The site's public address, e.g. https://papers.example.org, for links in feeds "
            "and emails; an https:// address also makes cookies Secure and turns on HSTS."),
    Setting("host", "127.0.0.1", "Address `papersift serve` listens on (0.0.0.0 for every interface)."),
    Setting("port", 8000, "Port `papersift serve` listens on."),
    Setting("workers", 1, "Web worker processes for `papersift serve`."),
    Setting("smtp_host", None, "SMTP server that sends confirmation emails and digests (not set: mail is not configured)."),
    Setting("smtp_port", 587, "SMTP port: 587 for starttls, 465 for ssl."),
    Setting("smtp_security", "starttls", "How the SMTP connection is secured: starttls, ssl or none."),
    Setting("smtp_user", None, "SMTP user name (not set: no log-in)."),
    Setting("smtp_password", None, "SMTP password.", secret=True),
    Setting("mail_from", "papersift <papersift@localhost>", "From address of confirmation emails and digests."),
    Setting("digest_papers", 10, "Papers per digest."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


class Settings(Mapping[str, Any]):
    """Resolved settings; read like a mapping or as attributes (`settings.batch_size`)."""

    def __init__(self, values: dict[str, Any], origins: dict[str, str]):
        self._values = values
        self._origins = origins

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def origin(self, name: str) -> str:
        return self._origins[name]

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self._values["data_dir"] or _default_data_dir()).expanduser()

    @property
    def resolved_database_url(self) -> str:
        url = self._values["database_url"]
        if url:
            return str(url)
        return str(self.resolved_data_dir / "catalog.db")

    def show(self) -> list[tuple[str, str, str, str]]:
        """(name, value, origin, help) rows with secrets masked."""
        rows = []
        for s in SETTINGS:
            value = self._values[s.name]
            shown = "(not set)" if value is None else ("****" if s.secret else str(value))
            if s.name == "database_url" and value:
                shown = masked_url(str(value))
            rows.append((s.name, shown, self._origins[s.name], s.help))
        return rows


def masked_url(url: str) -> str:
    """A database URL with any password hidden, for messages and `config show`."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def _coerce(setting: Setting, raw: Any, origin: str) -> Any:
    if raw is None or setting.default is None or isinstance(raw, type(setting.default)):
        if isinstance(setting.default, float) and isinstance(raw, int):
            return float(raw)
        return raw
    try:
        if isinstance(setting.default, bool):
            return str(raw).lower() in ("1", "true", "yes", "on")
        return type(setting.default)(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {setting.name} from {origin}: {raw!r} is not a {type(setting.default).__name__}"
        ) from None


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    config_file = overrides.get("config_file") or environ.get("PAPERSIFT_CONFIG_FILE") or "papersift.toml"
    from_file: dict[str, Any] = {}
    path = Path(config_file)
    if path.is_file():
        try:
            from_file = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        bad = set(from_file) - set(_BY_NAME)
        if bad:
            raise ConfigError(f"{path}: unknown setting(s): {', '.join(sorted(bad))}")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in overrides:
            raw, origin = overrides[s.name], "flag"
        elif s.env in environ:
            raw, origin = environ[s.env], "env " + s.env
        elif s.name in from_file:
            raw, origin = from_file[s.name], f"file {path}"
        else:
            raw, origin = s.default, "default"
        values[s.name] = _coerce(s, raw, origin)
        origins[s.name] = origin
    return Settings(values, origins)
