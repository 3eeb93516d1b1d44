"""The Kaggle arXiv snapshot source, on the real first 200 lines of arxiv-metadata-oai-snapshot.json."""

from __future__ import annotations

import gc
import gzip
import json
import tracemalloc
import weakref
from pathlib import Path

import pytest

from papersift.ingest.base import Checkpoint, numbered_lines, open_binary
from papersift.ingest.kaggle import SOURCES, detex, open_kaggle, parse_kaggle, parse_kaggle_record
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem

PAYLOADS = Path(__file__).resolve().parents[2] / "shared" / "data" / "payloads"
HEAD200 = PAYLOADS / "kaggle-arxiv-snapshot" / "arxiv-metadata-oai-snapshot-head200.jsonl"
SPEC = SOURCES[0]


def _records(path, start: int = 0) -> list:
    stream = open_binary(path)
    try:
        return list(parse_kaggle(numbered_lines(stream, "kaggle", start)))
    finally:
        stream.close()


def _papers(records) -> dict[str, Paper]:
    return {r.arxiv_id: r for r in records if isinstance(r, Paper)}


@pytest.fixture(scope="module")
def head_records():
    return _records(HEAD200)


@pytest.fixture(scope="module")
def head(head_records):
    return _papers(head_records)


@pytest.fixture(scope="module")
def raw_rows():
    return [json.loads(line) for line in HEAD200.read_text(encoding="utf-8").splitlines()]


def test_all_200_real_lines_parse_with_a_checkpoint_after_each(head_records, head):
    assert not [r for r in head_records if isinstance(r, Problem)]
    assert len(head) == 200
    assert [r.position for r in head_records if isinstance(r, Checkpoint)] == [str(n) for n in range(1, 201)]
    assert min(head) == "0704.0001" and max(head) == "0704.0200"
    assert all(p.source == "kaggle" and p.title and p.abstract and p.authors for p in head.values())


def test_first_record_real_values(head):
    p = head["0704.0001"]
    assert p.title == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    assert p.submitted.isoformat() == "2007-04-02"  # v1: Mon, 2 Apr 2007 19:18:42 GMT
    assert p.updated.isoformat() == "2007-07-24"  # v2: Tue, 24 Jul 2007
    assert p.version == 2
    assert p.doi == "10.1103/physrevd.76.013009"  # 10.1103/PhysRevD.76.013009, normalized to lower case
    assert p.links["doi"] == "https://doi.org/10.1103/physrevd.76.013009"
    # authors_parsed is Unicode where the `authors` string has C. Bal\'azs
    assert p.authors == ("C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C. -P. Yuan")
    assert p.categories == ("hep-ph",)
    assert p.journal_ref == "Phys.Rev.D76:013009,2007"
    assert p.comment == "37 pages, 15 figures; published version"
    assert p.signals == {"report_no": "ANL-HEP-PR-07-12"}
    assert p.abstract.startswith("A fully differential calculation in perturbative quantum chromodynamics is presented")
    assert "\n" not in p.abstract and "  " not in p.abstract
    assert not p.withdrawn


def test_suffix_categories_license_and_versions(head, raw_rows):
    assert "Neal J. Evans II" in head["0704.0009"].authors
    p = head["0704.0002"]
    assert p.categories == ("math.CO", "cs.CG") and p.primary_category == "math.CO"
    assert p.signals["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    # every multi-version paper: version = number of versions, updated = the last version's day
    multi = [r for r in raw_rows if len(r["versions"]) > 1]
    assert len(multi) == 87
    for row in multi:
        paper = head[row["id"]]
        assert paper.version == len(row["versions"])
        assert paper.updated > paper.submitted or paper.updated == paper.submitted
    assert head["0704.0011"].version == 3
    assert (head["0704.0011"].submitted.isoformat(), head["0704.0011"].updated.isoformat()) == ("2007-03-31",
                                                                                                 "2008-08-20")
    assert sum(1 for p in head.values() if p.version == 5) == 3


def test_withdrawn_paper_is_kept_and_flagged(head):
    p = head["0704.0156"]
    assert p.withdrawn
    assert p.abstract == "This paper has been withdrawn by the authors."
    assert p.doi == "10.1029/2007ja012441"
    assert [q.arxiv_id for q in head.values() if q.withdrawn] == ["0704.0156"]


def test_latex_in_titles_and_abstracts(head):
    assert head["0704.0019"].title.endswith("based on the Gröbner basis")
    assert head["0704.0073"].title == "A transcendental approach to Kollár's injectivity theorem"
    assert head["0704.0068"].title == "A Note About the Ki(z) Functions"  # case-protecting braces dropped
    assert head["0704.0005"].title == r"From dyadic $\Lambda_{\alpha}$ to $\Lambda_{\alpha}$"  # math kept
    assert "compact Kähler manifold" in head["0704.0073"].abstract
    assert r"\cite{hajac}" in head["0704.0041"].abstract
    assert detex(r"{\o}ystein \c{c}a \v Ce{\'\i} 5\% \emph{x} $\{a\}$") == r"øystein ça Čeí 5% x $\{a\}$"


def test_author_string_is_the_fallback(raw_rows):
    row = dict(raw_rows[0], authors_parsed=None)
    assert parse_kaggle_record(row).authors == ("C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C.-P. Yuan")
    # 0704.0025's string carries affiliations in nested parentheses
    row = dict(next(r for r in raw_rows if r["id"] == "0704.0025"), authors_parsed=[])
    assert parse_kaggle_record(row).authors == ("A. S. Mishchenko", "N. Nagaosa")


def test_ids_old_style_versioned_and_invalid(raw_rows):
    row = raw_rows[0]
    assert parse_kaggle_record(dict(row, id="hep-th/9901001")).arxiv_id == "hep-th/9901001"
    assert parse_kaggle_record(dict(row, id="math.GT/0309136")).arxiv_id == "math/0309136"
    assert parse_kaggle_record(dict(row, id="2401.00001")).arxiv_id == "2401.00001"
    for bad in ("2401.0001", "0704.00001", "0713.0001", "", 704.0001, None):  # wrong era, month 13, not a str
        problem = parse_kaggle_record(dict(row, id=bad), position="line 9")
        assert isinstance(problem, Problem) and problem.position == "line 9", bad
        assert problem.reason.startswith("missing or malformed arXiv id")


def test_multiple_dois_keep_the_first(raw_rows):
    row = next(r for r in raw_rows if r["doi"] and " " in r["doi"])
    p = parse_kaggle_record(row)
    assert p.doi == row["doi"].split()[0].lower()
    assert p.signals["dois"] == [d.lower() for d in row["doi"].split()]


def test_broken_lines_become_problems_and_the_rest_lands(tmp_path, raw_rows):
    real = HEAD200.read_bytes().splitlines(keepends=True)
    no_title = dict(raw_rows[3], id="0704.9901")
    del no_title["title"]
    bad_date = dict(raw_rows[4], id="0704.9902",
                    versions=[{"version": "v1", "created": "sometime in April 2007"}])
    no_id = {k: v for k, v in raw_rows[5].items() if k != "id"}
    broken = {  # inserted before the real line with this index (0-based)
        2: b"this is not JSON\n",
        5: real[7][:300] + b"\n",  # a line cut off mid-record
        9: json.dumps(no_title).encode() + b"\n",
        12: json.dumps(bad_date).encode() + b"\n",
        15: real[20].replace(b'"title":"', b'"title":"\xff\xfe'),
        18: b"[1, 2, 3]\n",
        21: json.dumps(no_id).encode() + b"\n",
        24: b"   \n",
    }
    out = []
    for i, line in enumerate(real):
        if i in broken:
            out.append(broken[i])
        out.append(line)
    path = tmp_path / "spliced.jsonl"
    path.write_bytes(b"".join(out))

    records = _records(path)
    problems = [r for r in records if isinstance(r, Problem)]
    # line numbers: each inserted line sits at its index + the number of insertions before it + 1
    bad_byte = real[20].index(b'"title":"') + len(b'"title":"')
    expected = [
        ("line 3", "not JSON: Expecting value"),
        ("line 7", "not JSON: "),  # cut off mid-string
        ("line 12", "0704.9901: missing title"),
        ("line 16", "0704.9902: unreadable date 'sometime in April 2007'"),
        ("line 20", f"not UTF-8 (invalid start byte at byte {bad_byte})"),
        ("line 24", "expected a JSON object, got list"),
        ("line 28", "missing or malformed arXiv id None"),
    ]
    assert len(problems) == len(expected)
    for problem, (position, reason) in zip(problems, expected):
        assert problem.source == "kaggle" and problem.position == position
        assert problem.reason.startswith(reason), problem.reason
    papers = _papers(records)
    assert len(papers) == 200 and "0704.9901" not in papers
    checkpoints = [r.position for r in records if isinstance(r, Checkpoint)]
    assert checkpoints == [str(n) for n in range(1, len(out) + 1)]


def test_gzipped_copy_parses_the_same(tmp_path, head_records):
    path = tmp_path / "snapshot.json.gz"
    path.write_bytes(gzip.compress(HEAD200.read_bytes()))
    assert _records(path) == head_records


def test_truncated_gzip_is_a_problem_not_a_crash(tmp_path):
    data = gzip.compress(HEAD200.read_bytes())
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    records = _records(path)
    problems = [r for r in records if isinstance(r, Problem)]
    assert len(problems) == 1 and "truncated or corrupt" in problems[0].reason
    assert 50 < len(_papers(records)) < 200


def test_resuming_skips_the_earlier_lines(settings):
    records = list(open_kaggle(str(HEAD200), settings, "150", {}))
    papers = [r for r in records if isinstance(r, Paper)]
    assert [p.arxiv_id for p in papers][:2] == ["0704.0151", "0704.0152"]
    assert len(papers) == 50
    assert records[1] == Checkpoint("151")


def test_run_source_end_to_end_then_idempotent(store, settings):
    report = run_source(store, SPEC, str(HEAD200), settings)
    assert (report.status, report.seen, report.added, report.skipped) == ("done", 200, 200, 0)
    assert store.count_papers() == 200
    p = store.get_paper("0704.0001")
    assert p.authors[0] == "C. Balázs" and p.doi == "10.1103/physrevd.76.013009"
    assert p.submitted.isoformat() == "2007-04-02"
    assert store.get_paper("0704.0156").withdrawn
    again = run_source(store, SPEC, str(HEAD200), settings)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 200)


def test_run_source_resumes_from_the_saved_checkpoint(store, settings):
    key = SPEC.resume_key(str(HEAD200), {})
    store.upsert_papers([], checkpoint=(key, "180"))
    report = run_source(store, SPEC, str(HEAD200), settings)
    assert report.resumed_from == "180" and report.added == 20
    assert store.find_paper("0704.0180") is None and store.find_paper("0704.0181") is not None
    assert store.get_checkpoint(key) is None  # a finished run clears it


def _synthetic(path, n_lines: int, rows) -> None:
    """n_lines real records, re-keyed with new ids (and DOIs) so each line is a different paper."""
    with open(path, "w", encoding="utf-8") as f:
        for n in range(n_lines):
            row = dict(rows[n % len(rows)], id=f"{2001 + n // 90000:04d}.{n % 90000:05d}")
            if row["doi"]:
                row["doi"] = f"10.9999/synthetic.{n}"
            f.write(json.dumps(row) + "\n")


def _stream(path, on_paper=None) -> int:
    stream = open_binary(path)
    try:
        count = 0
        for record in parse_kaggle(numbered_lines(stream, "kaggle")):
            if isinstance(record, Paper):
                count += 1
                if on_paper:
                    on_paper(count, record)
        return count
    finally:
        stream.close()


def _peak_while_streaming(path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        return _stream(path), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# tracemalloc slows every allocation about fivefold, so the traced comparison uses 2k vs 10k lines
# (a few seconds); run by hand at 2k, 10k and 50k lines the peak is the same 36,963 bytes each time.
SMALL, LARGE = 2_000, 10_000


def test_memory_does_not_grow_with_file_length(tmp_path, raw_rows):
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    _synthetic(small, SMALL, raw_rows)
    _synthetic(large, LARGE, raw_rows)

    # The cyclic GC stays off: a full collection empties the interpreter's free lists (bounded caches
    # of freed tuples and dicts) and their refilling would read as "growth". It also means any
    # reference cycle the parser made would pile up here. An untraced pass first fills those caches
    # and checks that no paper outlives its turn.
    gc.disable()
    try:
        alive = []
        _stream(small, lambda n, paper: alive.append(weakref.ref(paper)) if n % 200 == 0 else None)
        assert len(alive) == SMALL // 200 and all(ref() is None for ref in alive)
        count_small, peak_small = _peak_while_streaming(small)
        count_large, peak_large = _peak_while_streaming(large)
    finally:
        gc.enable()
    assert (count_small, count_large) == (SMALL, LARGE)
    # five times the lines, the same peak; holding the papers would cost ~2 kB each (20 MB here)
    assert peak_large <= peak_small * 1.1 + 16 * 1024, (peak_small, peak_large)
    assert peak_large < 512 * 1024, peak_large
