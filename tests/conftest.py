import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/replay.py etc.

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
PAYLOADS = DATA / "payloads"


@pytest.fixture
def payload():
    """Read a recorded payload by its path under ../shared/data/payloads."""
    def read(relpath: str) -> bytes:
        return (PAYLOADS / relpath).read_bytes()
    return read


@pytest.fixture
def replay_server():
    from replay import ReplayServer

    with ReplayServer() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    from papersift.store import open_store

    s = open_store(str(tmp_path / "catalog.db"), migrate=True)
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings pointing at a fresh data dir, with no pause between HTTP requests."""
    from papersift.settings import load_settings

    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    return load_settings({"data_dir": str(tmp_path / "data"), "http_delay": 0.0, "config_file": str(tmp_path / "none.toml")})


# -- a small real site: papers of the bundled sample's last days, indexed with the real model ----

WEB_DAYS = ("2026-06-29", "2026-06-30", "2026-07-01")
WEB_PER_DAY = 150


def sample_papers(days=WEB_DAYS, per_day=WEB_PER_DAY):
    """Real arXiv papers from papersift's bundled sample, `per_day` from each of `days`."""
    import gzip
    import json
    from importlib import resources

    from papersift.ingest.jsonl import parse_arxiv_daily_record

    taken: dict[str, int] = {}
    out = []
    with gzip.open(resources.files("papersift") / "data" / "sample.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            day = record.get("first_listed")
            if day in days and taken.get(day, 0) < per_day:
                taken[day] = taken.get(day, 0) + 1
                out.append(parse_arxiv_daily_record(record))
    return out


@pytest.fixture(scope="session")
def web_data(tmp_path_factory):
    """A data dir whose catalog holds ~450 real papers over three listing days, fully indexed.
    Tests copy it (web_settings) so each starts from the same state."""
    from papersift.index.build import build_index
    from papersift.index.embed import create_embedder
    from papersift.store import open_store

    data = tmp_path_factory.mktemp("web-data")
    store = open_store(str(data / "catalog.db"), migrate=True)
    store.upsert_papers(sample_papers())
    build_index(store, create_embedder("minilm", data / "models"), data)
    store.close()
    return data


@pytest.fixture
def web_settings(web_data, tmp_path, monkeypatch):
    import shutil

    from papersift.settings import load_settings

    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    shutil.copytree(web_data, data)
    return load_settings({"data_dir": str(data), "config_file": str(tmp_path / "none.toml")})
