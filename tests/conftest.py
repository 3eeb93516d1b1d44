import os
import shutil
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
def clean_env(tmp_path, monkeypatch):
    """The environment a user's fresh shell gives the CLI: no PAPERSIFT_* variables but a data dir and
    a (missing) config file under tmp_path, which is returned."""
    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PAPERSIFT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PAPERSIFT_CONFIG_FILE", str(tmp_path / "papersift.toml"))
    return tmp_path


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


# -- the catalog backends the suites that read a whole site run on --------------------------------

BACKENDS = ("sqlite", "postgresql")


def no_postgres(why) -> None:
    """Skip: no PostgreSQL can run here. Under PAPERSIFT_REQUIRE_POSTGRES=1 (CI) that is a failure."""
    if os.environ.get("PAPERSIFT_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (PAPERSIFT_REQUIRE_POSTGRES=1) but: {why}")
    pytest.skip(f"no PostgreSQL here: {why}")


def postgres_database(template: str | None = None) -> str:
    """A new database on the session's throwaway PostgreSQL (tests/pg.py): empty, or a copy of `template`."""
    try:
        import pg

        return pg.new_database(template)
    except ImportError as e:
        no_postgres(e)
    except pg.PostgresUnavailable as e:
        no_postgres(e)


def open_postgres_store(template: str | None = None):
    """(url, a migrated Store on a new database); the database is a copy of `template` when given."""
    from papersift.errors import ConfigError
    from papersift.store import open_store

    url = postgres_database(template)
    try:
        return url, open_store(url, migrate=True)
    except ConfigError as e:  # psycopg missing
        no_postgres(e)


def drop_postgres_database(url: str) -> None:
    import pg

    pg.drop_database(url)


def copy_data_dir(source: Path, target: Path) -> None:
    """A private copy of a data dir, its model files (140 MB, only ever read) hard-linked, not copied."""
    shutil.copytree(source, target, ignore=lambda folder, names: ["models"] if Path(folder) == source else [])
    if (source / "models").is_dir():
        shutil.copytree(source / "models", target / "models", copy_function=os.link)


@pytest.fixture
def empty_store(backend, tmp_path):
    """An empty, migrated catalog on the test's backend (a module may narrow `backend` to module scope)."""
    from papersift.store import open_store

    if backend == "postgresql":
        url, store = open_postgres_store()
    else:
        url, store = None, open_store(str(tmp_path / "empty.db"), migrate=True)
    yield store
    store.close()
    if url:
        drop_postgres_database(url)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The catalog backend a test runs on: every test that asks (through web_settings, say) runs on each.
    A test that is SQLite's alone says so: @pytest.mark.parametrize("backend", ["sqlite"]) and why."""
    return request.param


@pytest.fixture(scope="session")
def web_data_postgresql(web_data, tmp_path_factory):
    """web_data on PostgreSQL, as a user gets there: the SQLite catalog copied with `papersift db
    migrate-to`'s copy_catalog (verified), then the indexes built from the copy by build_index, in a data
    dir of their own. Returns (URL of the template database, data dir); nobody stays connected to it."""
    from papersift.index.build import build_index
    from papersift.index.embed import create_embedder
    from papersift.store import open_store
    from papersift.store.copy import copy_catalog

    data = tmp_path_factory.mktemp("web-data-postgresql")
    url, target = open_postgres_store()
    source = open_store(str(web_data / "catalog.db"))
    try:
        report = copy_catalog(source, target)
        assert report.verified, report.as_dict()
        shutil.copytree(web_data / "models", data / "models", copy_function=os.link)  # the model, not its indexes
        build_index(target, create_embedder("minilm", data / "models"), data)
    finally:
        source.close()
        target.close()
    return url, data


@pytest.fixture
def web_settings(web_data, backend, request, tmp_path, monkeypatch):
    """Settings over a private copy of web_data: on SQLite a copy of its data dir; on PostgreSQL a new
    database copied from web_data_postgresql's template, and a copy of that data dir."""
    from papersift.settings import load_settings

    for key in list(os.environ):
        if key.startswith("PAPERSIFT_"):
            monkeypatch.delenv(key)
    data = tmp_path / "data"
    values = {"data_dir": str(data), "config_file": str(tmp_path / "none.toml")}
    if backend == "postgresql":
        template, template_data = request.getfixturevalue("web_data_postgresql")
        copy_data_dir(template_data, data)
        values["database_url"] = postgres_database(template)
        request.addfinalizer(lambda: drop_postgres_database(values["database_url"]))
    else:
        copy_data_dir(web_data, data)
    return load_settings(values)
