"""A reader's library: BibTeX/BibLaTeX, RIS and CSL JSON exports, on the real export files in
../shared/data/payloads/bibtex-ris-csl (Zotero Better BibTeX, JabRef, BibDesk, NASA ADS)."""

from __future__ import annotations

import json

import pytest

from papersift.errors import SourceError
from papersift.ingest.bibtex import (
    SOURCES,
    bibtex_entry_to_paper,
    decode_library,
    parse_bibtex,
    parse_csl_json,
    parse_ris,
)
from papersift.ingest.runner import run_source
from papersift.models import Paper, Problem

DIR = "bibtex-ris-csl/"


def get_source(name: str):
    """This module's own source specs (papersift.ingest.get_source would import every source module)."""
    return {spec.name: spec for spec in SOURCES}[name]


def read(payload, name: str) -> list[Paper | Problem]:
    text, problems = decode_library(payload(DIR + name))
    assert problems == []
    parse = parse_csl_json if name.endswith(".json") else parse_bibtex
    return list(parse(text))


def by_key(records) -> dict[str, Paper]:
    records = list(records)
    assert all(isinstance(r, Paper) for r in records), [r for r in records if isinstance(r, Problem)]
    return {r.signals["citekey"]: r for r in records}


# ---------------------------------------------------------------- real BibTeX / BibLaTeX exports

def test_zotero_better_bibtex_export_with_arxiv_identifiers(payload):
    papers = by_key(read(payload, "zotero-bbt-export-arxiv-identifiers.bibtex"))
    assert list(papers) == ["Ronnow.2014.Defining", "Sen.2016.BV", "Smolin.2013.Classical"]
    ronnow, sen, smolin = papers.values()
    assert (ronnow.arxiv_id, sen.arxiv_id, smolin.arxiv_id) == ("1401.2910", "1508.05387", "1305.4904")
    assert ronnow.title == "Defining and Detecting Quantum Speedup"
    assert ronnow.authors[0] == "Troels F. Rønnow" and ronnow.authors[-1] == "Matthias Troyer"
    assert len(ronnow.authors) == 9
    assert ronnow.doi == "10.1126/science.1252319" and ronnow.journal_ref == "Science"
    assert ronnow.categories == ("quant-ph",)
    assert ronnow.signals["year"] == "2014" and ronnow.submitted is None  # a year is not a date
    assert ronnow.abstract.startswith("The development of small-scale digital and analog quantum devices")
    # {{BV Master Action}}: the case-protecting braces go
    assert sen.title == "BV Master Action for Heterotic and Type II String Field Theories"
    assert sen.doi == "10.1007/jhep02(2016)087" and sen.authors == ("Ashoke Sen",)
    assert "superstring field theory" in sen.signals["keywords"]
    # journal = {arXiv:1305.4904 [quant-ph]} names the preprint, not a journal
    assert smolin.journal_ref is None and smolin.doi is None
    assert smolin.authors == ("John A. Smolin", "Graeme Smith")


def test_same_library_as_better_biblatex(payload):
    papers = by_key(read(payload, "zotero-bbt-export-arxiv-identifiers.biblatex"))
    ronnow, sen, smolin = papers.values()
    assert [p.arxiv_id for p in papers.values()] == ["1401.2910", "1508.05387", "1305.4904"]
    assert ronnow.journal_ref == "Science" and ronnow.signals["year"] == "2014"  # journaltitle, date
    assert ronnow.categories == ("quant-ph",)  # eprintclass
    assert sen.signals["year"] == "2016"
    assert smolin.comment == "8 pages, 3 pdf figures"  # Zotero's "Comment: …" note is the arXiv comment


def test_zotero_preprint_as_misc(payload):
    [paper] = read(payload, "zotero-bbt-export-preprint-misc.bibtex")
    assert (paper.arxiv_id, paper.doi, paper.categories) == ("1410.5093", None, ("hep-ph",))
    assert paper.title == "Higgs Physics beyond the Standard Model"
    assert paper.authors == ("M. Muhlleitner",)
    assert paper.signals == {"citekey": "muhlleitner2014", "year": "2014",
                             "keywords": ["High Energy Physics - Phenomenology"]}


def test_undefined_string_macro_journal(payload):
    [paper] = read(payload, "zotero-bbt-export-string-macro-journal.bibtex")
    assert paper.authors == ("Emil Björnson", "Luca Sanguinetti")
    assert (paper.arxiv_id, paper.doi) == ("1908.03119", "10.1109/tcomm.2020.2987311")
    # IEEE_J_WC is defined in IEEE's own .bib, not in this file: kept by name, as BibTeX prints it
    assert paper.journal_ref == "IEEE_J_WC"
    assert paper.comment == "To appear in IEEE Transactions on Communications, 14 pages, 6 figures"


def test_biblatex_eprint_with_redundant_arxiv_prefix(payload):
    [paper] = read(payload, "zotero-biblatex-user-file-eprint-arxiv-prefix.bib")
    assert paper.arxiv_id == "1902.07120"  # eprint = {arXiv:1902.07120}
    assert paper.title == ("Onsager's Conjecture in Bounded Domains for the Conservation of Entropy "
                           "and Other Companion Laws")
    assert paper.authors[2] == "Agnieszka Świerczewska-Gwiazda"
    assert paper.authors == ("Claude Bardos", "Piotr Gwiazda", "Agnieszka Świerczewska-Gwiazda",
                             "Edriss S. Titi", "Emil Wiedemann")
    assert paper.categories == ()  # primaryClass = {math}: an archive, not a category
    assert paper.signals["citekey"] == "bardos2019" and paper.signals["year"] == "2019"


def test_nasa_ads_export_old_style_id(payload):
    [paper] = read(payload, "nasa-ads-export-arxiv-oldstyle.bib")
    assert paper.arxiv_id == "astro-ph/0405395" and paper.categories == ("astro-ph",)
    assert paper.doi == "10.1051/0004-6361:20040307"
    assert paper.title == "Bright metal-poor variables: Why “Anomalous” Cepheids?"
    assert paper.authors == ("F. Caputo", "V. Castellani", "S. Degl'Innocenti", "G. Fiorentino", "M. Marconi")
    assert paper.journal_ref == "Astronomy and Astrophysics"  # {\aap}
    assert paper.signals["citekey"] == "2004A&A...424..927C"
    assert paper.signals["keywords"] == ["stars: variables: Cepheids", "stars: evolution", "Astrophysics"]


def test_bibdesk_file_with_strings_comments_and_capitalised_fields(payload):
    [paper] = read(payload, "bibdesk-user-file-string-comments.bib")
    assert paper.title == "Why not a political Coase theorem? Social conflict, commitment, and politics"
    assert paper.authors == ("Daron Acemoglu",) and paper.doi == "10.1016/j.jce.2003.09.003"
    assert paper.arxiv_id is None and paper.journal_ref == "Journal of Comparative Economics"
    assert paper.links["abs"] == "http://www.sciencedirect.com/science/article/pii/S014759670300101X"
    assert paper.signals == {"citekey": "Acemoglu2003Whynotpolitical", "year": "2003",
                             "keywords": ["Political economy"]}
    # the file's own @string macros, the hyphenated one included, expand in an entry that uses them
    text = payload(DIR + "bibdesk-user-file-string-comments.bib").decode()
    text += "\n@Article{macro-use,\n  Title = {Uses macros},\n  Journal = no-mendeley # { / } # macro,\n}\n"
    used = list(parse_bibtex(text))[-1]
    assert used.journal_ref == "mendeley is empty / definition"


def test_jabref_file_with_encoding_header_and_groups(payload):
    data = payload(DIR + "jabref-2.10-user-file-groups.bib")
    assert data.startswith(b"% This file was created with JabRef 2.10.\n% Encoding: ISO8859_1")
    papers = read(payload, "jabref-2.10-user-file-groups.bib")
    assert [p.title for p in papers] == ["The paper in my-subgroup-2", "The article in my-other-subgroup-2",
                                         "JR2: paper not in a group"]  # the @comment groups tree is no entry
    assert [p.authors for p in papers] == [("John Doe",), ("I. Other",), ("I Unkonw",)]
    assert papers[0].signals == {"citekey": "Doe-2017", "year": "2017"}
    assert "year" not in papers[1].signals  # no year given, none invented


@pytest.mark.parametrize("fields, arxiv_id", [
    ({"eprint": "2301.00001", "archiveprefix": "arXiv"}, "2301.00001"),
    ({"eprint": "arXiv:2301.00001v2", "eprinttype": "arxiv"}, "2301.00001"),
    ({"eprint": "hep-th/9901001"}, "hep-th/9901001"),
    ({"arxivid": "2301.00001"}, "2301.00001"),  # Mendeley
    ({"journal": "arXiv preprint arXiv:2301.00001"}, "2301.00001"),  # Google Scholar
    ({"url": "https://arxiv.org/abs/2301.00001v3"}, "2301.00001"),
    ({"note": "\\url{http://arxiv.org/abs/math.GT/0309136}"}, "math/0309136"),
    ({"howpublished": "\\url{https://arxiv.org/pdf/2301.00001.pdf}"}, "2301.00001"),
    ({"doi": "10.48550/arXiv.2301.00001"}, "2301.00001"),
    ({"eprint": "12345678", "eprinttype": "pubmed"}, None),
])
def test_arxiv_id_wherever_the_exporter_put_it(fields, arxiv_id):
    paper = bibtex_entry_to_paper({"ID": "k", "title": "T", **fields})
    assert paper.arxiv_id == arxiv_id
    assert paper.doi is None  # an arXiv DOI is the arXiv id, not kept as the paper's DOI


@pytest.mark.parametrize("fields", [
    {"doi": "https://doi.org/10.1000/ABC.1"}, {"doi": "DOI: 10.1000/abc.1"},
    {"url": "http://dx.doi.org/10.1000/abc.1"}, {"bdsk-url-2": "https://doi.org/10.1000/abc.1"},
])
def test_doi_in_any_case_and_from_a_resolver_link(fields):
    assert bibtex_entry_to_paper({"ID": "k", "title": "T", **fields}).doi == "10.1000/abc.1"


# ---------------------------------------------------------------- broken input

GOOD_BROKEN_GOOD = """% two good entries around a broken one
@article{good1,
  title = {First {{Good}} Entry},
  author = {Bal\\'azs, P{\\'e}ter and {The ATLAS Collaboration} and others},
  month = jul, year = 2020,
}

@article{broken,
  title = {Broken {title,
  author = {Doe, Jane}
}

@article{notitle, author = {Nobody, N.}, year = 2021}

@article(good2,
  title = "Lexical access: (re)consideration of context effects",
%  note = {a field commented out, as Biber allows},
  author = {Swinney, David A.}
)
@book{,
  title = {Mendeley leaves the key empty},
}
"""


def test_broken_entries_are_problems_and_the_rest_still_parses():
    records = list(parse_bibtex(GOOD_BROKEN_GOOD))
    papers = [r for r in records if isinstance(r, Paper)]
    problems = [r for r in records if isinstance(r, Problem)]
    assert [p.title for p in papers] == ["First Good Entry",
                                         "Lexical access: (re)consideration of context effects",
                                         "Mendeley leaves the key empty"]
    assert papers[0].authors == ("Péter Balázs", "The ATLAS Collaboration")  # `and others` dropped
    assert papers[1].authors == ("David A. Swinney",)
    assert [str(p) for p in problems] == [
        "bibtex:line 8: entry 2 (broken): unbalanced braces, it never closes; skipped",
        "bibtex:entry 3 (notitle): no title (line 13)",
    ]


def test_syntax_error_reports_its_line():
    text = ("@article{a, title = {A}}\n"
            "@article{b,\n  title = {B}\n  author = {X}\n}\n"
            "@article{c, title = {C}}\n")
    records = list(parse_bibtex(text))
    assert [r.title for r in records if isinstance(r, Paper)] == ["A", "C"]
    [problem] = [r for r in records if isinstance(r, Problem)]
    assert problem.position == "line 4" and "expected ',' or '}' after the value of 'title'" in problem.reason


def test_latin1_without_header_is_read_and_reported():
    data = "@article{k, title = {Caf\u00e9 au lait}, author = {M\u00fcller, J\u00f6rg}}\n".encode("latin-1")
    text, problems = decode_library(data, "bibtex")
    [paper] = parse_bibtex(text)
    assert paper.title == "Café au lait" and paper.authors == ("Jörg Müller",)
    [problem] = problems
    assert problem.position == "line 1"
    assert problem.reason == "not UTF-8 (byte 0xe9 at offset 24); read as cp1252"


def test_encoding_header_is_honoured_unless_the_file_is_utf8():
    latin = "% Encoding: ISO8859_1\n\n@article{k, title = {Na\u00efve \u201cquotes\u201d}}\n".encode("cp1252")
    text, problems = decode_library(latin)
    assert problems == [] and "Naïve “quotes”" in text
    # JabRef's header, but the file was re-saved as UTF-8 by another editor
    utf8 = "% Encoding: ISO8859_1\n@article{k, title = {R\u00f8nnow}}\n".encode()
    assert decode_library(utf8) == (utf8.decode(), [])
    assert decode_library(b"\xef\xbb\xbf@article{k, title={T}}") == ("@article{k, title={T}}", [])


def test_empty_file(tmp_path, settings):
    assert list(parse_bibtex("")) == [] and list(parse_ris("")) == [] and list(parse_csl_json("")) == []
    path = tmp_path / "empty.bib"
    path.write_bytes(b"")
    assert list(get_source("bibtex").open(str(path), settings, None, {})) == []


def test_missing_file_is_a_source_error(tmp_path, settings):
    with pytest.raises(SourceError, match="no such file"):
        list(get_source("ris").open(str(tmp_path / "nope.ris"), settings, None, {}))


# ---------------------------------------------------------------- RIS

# No real RIS export of an arXiv paper could be found (SOURCES.md): this one is written by hand in the
# shape of Zotero's RIS export of an arXiv preprint and of a journal article, plus two broken records.
ZOTERO_STYLE_RIS = """TY  - PREPRINT
TI  - Attention Is All You Need
AU  - Vaswani, Ashish
AU  - Shazeer, Noam
AB  - The dominant sequence transduction models are based on complex recurrent or
      convolutional neural networks.
DO  - 10.48550/arXiv.1706.03762
UR  - http://arxiv.org/abs/1706.03762
PY  - 2017
DA  - 2017/06/12/
PB  - arXiv
KW  - Computer Science - Computation and Language
N1  - arXiv:1706.03762 [cs]
N1  - Comment: 15 pages, 5 figures
ER  - 

TY  - JOUR
TI  - Scalable Cell-Free Massive MIMO Systems
AU  - Björnson, Emil
AU  - Sanguinetti, Luca
T2  - IEEE Transactions on Communications
DO  - https://doi.org/10.1109/TCOMM.2020.2987311
PY  - 2020
ER  - 

TY  - JOUR
AU  - Nobody, N.
PY  - 2021
ER  - 

TY  - CONF
T1  - A record missing its ER line
A1  - Caputo, F.
Y1  - 2004///
TY  - JOUR
TI  - The record after it
AU  - Smith, John, Jr.
N1  - See https://arxiv.org/abs/hep-th/9901001v2
"""


def test_ris_records_and_broken_ones():
    records = list(parse_ris(ZOTERO_STYLE_RIS))
    assert [type(r).__name__ for r in records] == ["Paper", "Paper", "Problem", "Paper", "Paper"]
    attention, mimo, problem, no_er, after = records
    assert (attention.arxiv_id, attention.doi) == ("1706.03762", None)
    assert attention.authors == ("Ashish Vaswani", "Noam Shazeer")
    assert attention.abstract.endswith("complex recurrent or convolutional neural networks.")
    assert attention.comment == "15 pages, 5 figures" and attention.journal_ref is None
    assert attention.signals == {"year": "2017", "keywords": ["Computer Science - Computation and Language"]}
    assert mimo.doi == "10.1109/tcomm.2020.2987311"
    assert mimo.journal_ref == "IEEE Transactions on Communications"
    assert mimo.authors == ("Emil Björnson", "Luca Sanguinetti")
    assert str(problem) == "ris:entry 3: no title (TI or T1) (line 26)"
    # the record without ER does not swallow the next one
    assert (no_er.title, no_er.authors, no_er.signals) == ("A record missing its ER line", ("F. Caputo",),
                                                           {"year": "2004"})
    assert (after.title, after.authors, after.arxiv_id, after.version) == (
        "The record after it", ("John Smith Jr.",), "hep-th/9901001", 2)


def test_a_file_that_is_not_ris():
    assert [str(r) for r in parse_ris("@article{k, title={T}}")] == [
        "ris:line 1: no RIS records found (each starts with a `TY  - ` line)"]


# ---------------------------------------------------------------- CSL JSON

def test_better_csl_json_export(payload):
    records = read(payload, "zotero-bbt-better-csl-json-export.csl.json")
    assert len(records) == 7
    [problem] = [r for r in records if isinstance(r, Problem)]
    assert str(problem) == "csl-json:entry 4 (emptybook): no title"
    papers = by_key(r for r in records if isinstance(r, Paper))
    blair = papers["Blair2004"]
    assert blair.title == "Frithuswith (d. 727)"  # <i>d.</i>: rich-text markup dropped
    assert blair.doi == "10.1093/ref:odnb/10183" and blair.authors == ("John Blair",)
    assert blair.journal_ref == "Oxford dictionary of national biography" and blair.signals["year"] == "2004"
    assert papers["Author2015"].authors == ("Ann Author",)  # editors are not authors
    assert papers["friends:leia:tv"].signals["year"] == "1996"


def test_csl_json_arxiv_item_and_bad_input():
    # Zotero's CSL for an arXiv preprint (no real one in the payloads): number, note, arXiv DOI, URL
    item = {"id": "vaswani2017", "type": "article", "title": "Attention Is All You Need",
            "author": [{"family": "Vaswani", "given": "Ashish"}, {"literal": "Google Brain"}],
            "publisher": "arXiv", "number": "arXiv:1706.03762", "note": "arXiv:1706.03762 [cs.CL]",
            "DOI": "10.48550/arXiv.1706.03762", "URL": "http://arxiv.org/abs/1706.03762",
            "issued": {"date-parts": [[2017, 6, 12]]}, "keyword": "Computer Science - Machine Learning"}
    [paper] = parse_csl_json(json.dumps([item]))
    assert (paper.arxiv_id, paper.doi, paper.categories) == ("1706.03762", None, ("cs.CL",))
    assert paper.authors == ("Ashish Vaswani", "Google Brain")
    assert paper.signals == {"citekey": "vaswani2017", "year": "2017",
                             "keywords": ["Computer Science - Machine Learning"]}
    # a report number is no arXiv id unless the item says it is on arXiv
    report = {"title": "R", "type": "report", "number": "2015.12345", "publisher": "Institution"}
    assert next(parse_csl_json(json.dumps(report))).arxiv_id is None
    assert [str(r) for r in parse_csl_json('[{"title": "A"},\n 42,\n {"title": ""}]')][1:] == [
        "csl-json:entry 2: expected a JSON object, got int", "csl-json:entry 3: no title"]
    assert [str(r) for r in parse_csl_json('[{"title": "A"},\n {"title": ')] == [
        "csl-json:line 2: not JSON: Expecting value at column 12"]


# ---------------------------------------------------------------- into the catalog

def test_ingest_merges_into_papers_the_catalog_already_holds(payload, store, settings, tmp_path):
    # one library file: Zotero's 3 arXiv papers, the ADS paper, JabRef's 3 id-less papers
    path = tmp_path / "library.bib"
    path.write_bytes(b"\n".join(payload(DIR + name) for name in (
        "zotero-bbt-export-arxiv-identifiers.bibtex", "nasa-ads-export-arxiv-oldstyle.bib",
        "jabref-2.10-user-file-groups.bib")))
    store.upsert_papers([
        # from arXiv, same id, its own title capitalisation and a later version
        Paper(arxiv_id="1401.2910", version=2, title="Defining and detecting quantum speedup",
              authors=("Troels F. Ronnow", "Zhihui Wang"), source="arxiv"),
        # known only by its DOI
        Paper(doi="10.1051/0004-6361:20040307", title="Bright metal-poor variables", authors=("F. Caputo",)),
        # no identifier at all: title + first author
        Paper(title="The Paper in my-subgroup-2.", authors=("Doe, John",), source="manual"),
    ])
    before = {p.title: p.id for p in store.iter_papers()}
    assert len(before) == 3
    spec = get_source("bibtex")
    report = run_source(store, spec, str(path), settings)
    assert report.status == "done" and report.problems == []
    assert (report.seen, report.added, report.updated) == (7, 4, 3)
    assert store.count_papers() == 7

    speedup = store.get_paper("1401.2910")
    assert speedup.id == before["Defining and detecting quantum speedup"]
    assert speedup.title == "Defining and detecting quantum speedup"  # the arXiv v2 record keeps its title
    assert speedup.doi == "10.1126/science.1252319" and speedup.signals["citekey"] == "Ronnow.2014.Defining"
    cepheids = store.get_paper("doi:10.1051/0004-6361:20040307")
    assert cepheids.id == before["Bright metal-poor variables"]
    assert cepheids.arxiv_id == "astro-ph/0405395"  # the DOI match gains the arXiv id
    assert cepheids.signals["citekey"] == "2004A&A...424..927C"
    doe = [p for p in store.iter_papers() if p.signals.get("citekey") == "Doe-2017"]
    assert len(doe) == 1 and doe[0].id == before["The Paper in my-subgroup-2."]

    again = run_source(store, spec, str(path), settings)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 7) and store.count_papers() == 7


def test_the_same_arxiv_paper_stays_one_row(payload, store, settings, tmp_path):
    store.upsert_papers([Paper(arxiv_id="1410.5093", version=1, source="arxiv",
                               title="Higgs physics beyond the standard model",
                               authors=("M. Muhlleitner",), categories=("hep-ph",))])
    path = tmp_path / "misc.bibtex"
    path.write_bytes(payload(DIR + "zotero-bbt-export-preprint-misc.bibtex"))
    run_source(store, get_source("bibtex"), str(path), settings)
    assert store.count_papers() == 1
    assert store.get_paper("1410.5093").signals["citekey"] == "muhlleitner2014"
