"""Project-wide rules: settings documented, imports pointing down the pipeline, lint clean, ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from papersift.ids import normalize_doi, parse_arxiv_id, title_key
from papersift.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme or s.env not in readme]
    assert not missing, f"settings missing from README.md: {missing}"


def test_settings_precedence(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text("batch_size = 7\nhttp_delay = 1\n")
    env = {"PAPERSIFT_CONFIG_FILE": str(cfg), "PAPERSIFT_HTTP_DELAY": "2.5"}
    s = load_settings({"http_retries": 9}, environ=env)
    assert (s.batch_size, s.http_delay, s.http_retries) == (7, 2.5, 9)
    assert s.origin("batch_size").startswith("file") and s.origin("http_delay") == "env PAPERSIFT_HTTP_DELAY"
    assert s.origin("http_retries") == "flag"


def test_imports_point_down_the_pipeline():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "papersift", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("text, expected", [
    ("2401.00001", ("2401.00001", None)),
    ("2401.00001v3", ("2401.00001", 3)),
    ("arXiv:2401.00001v2", ("2401.00001", 2)),
    ("ARXIV: 0704.0001", ("0704.0001", None)),
    ("https://arxiv.org/abs/2401.00001v2", ("2401.00001", 2)),
    ("http://export.arxiv.org/pdf/2401.00001v1.pdf", ("2401.00001", 1)),
    ("arxiv.org/html/2401.00001v1", ("2401.00001", 1)),
    ("hep-th/9901001", ("hep-th/9901001", None)),
    ("math.GT/0309136v2", ("math/0309136", 2)),
    ("http://arxiv.org/abs/astro-ph/0601001v1", ("astro-ph/0601001", 1)),
    ("10.48550/arXiv.2401.00001", ("2401.00001", None)),
    ("2401.0001", None), ("hello", None), ("", None), ("1234.56789.1", None),
])
def test_arxiv_ids(text, expected):
    assert parse_arxiv_id(text) == expected


def test_dois_and_title_keys():
    assert normalize_doi("https://doi.org/10.1145/ABC.123") == "10.1145/abc.123"
    assert normalize_doi("doi:10.1103/PhysRevD.76.013009") == "10.1103/physrevd.76.013009"
    assert normalize_doi("not a doi") is None
    assert title_key("Über {G}raphs: A Study!", "Émile Noëther") == title_key("uber graphs a study", "Noether, E.")
    assert title_key("Graphs", "A. Smith") != title_key("Graphs", "A. Jones")
