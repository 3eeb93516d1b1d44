"""Versioned schema migrations: `<backend>/NNNN_name.sql`, applied in order, each once."""

from __future__ import annotations

import re
from importlib import resources


def load_migrations(backend: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration file of `backend`, in version order."""
    folder = resources.files(__package__) / backend
    out = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)
