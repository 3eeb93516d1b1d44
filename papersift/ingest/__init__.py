"""Ingestion: one module per source. Each has pure `parse_*` functions tested on real recorded
payloads and `fetch_*`/open functions for live use, and lists its `SOURCES` for the CLI."""

from __future__ import annotations

import importlib

from papersift.errors import BadInput
from papersift.ingest.base import Checkpoint, Record, SourceSpec

__all__ = ["Checkpoint", "Record", "SourceSpec", "all_sources", "get_source"]

_MODULES = ("jsonl", "kaggle", "oaipmh", "arxiv_rss", "arxiv_api", "hf_daily", "bibtex")


def all_sources() -> dict[str, SourceSpec]:
    """Every source by name, in the order the modules are listed above."""
    out: dict[str, SourceSpec] = {}
    for name in _MODULES:
        module = importlib.import_module(f"papersift.ingest.{name}")
        for spec in module.SOURCES:
            out[spec.name] = spec
    return out


def get_source(name: str) -> SourceSpec:
    sources = all_sources()
    if name not in sources:
        raise BadInput(f"unknown source {name!r}", hint="sources: " + ", ".join(sources))
    return sources[name]
