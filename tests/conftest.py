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
