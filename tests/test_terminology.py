"""Terminology: normalisation, search semantics, importers, the starter set and the endpoints."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from terminology import indexing, loading, releases, search
from terminology.indexing import ConceptRecord, Designation
from terminology.models import LOINC, SNOMED, Concept, ImportRecord, SearchTerm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "terminology"
LOINC_CORE = SHARED / "loinc" / "LoincTableCore_2.78.csv.gz"
SNOMED_CONCEPTS = SHARED / "snomed" / "snomed_ips_gps_concepts.csv.gz"


def codes(system: str, query: str, **options: object) -> list[str]:
    return [match.code for match in search.search(system, query, **options)]  # type: ignore[arg-type]


@pytest.fixture
def starter(db: None) -> None:
    loading.load_starter_set()


# --- normalisation ---------------------------------------------------------------------------


def test_normalise_folds_case_and_accents_and_keeps_only_letters_and_digits() -> None:
    assert (
        indexing.normalise("Anémie FERRIPRIVE — Ⅱ (B12); x-ray") == "anemie ferriprive ii b12 x ray"
    )


def test_normalise_treats_the_sharp_s_and_ligatures_like_their_spelled_out_forms() -> None:
    assert indexing.normalise("Straße Œdème") == "strasse oedeme"


# --- search semantics ------------------------------------------------------------------------


def test_every_word_must_prefix_match_a_word_of_the_same_designation_in_any_order(starter):
    found = codes(SNOMED, "mell diab typ 2")

    assert found[0] == "44054006"
    assert "46635009" not in found  # "Type 1 diabetes mellitus" has no word starting with "2"


def test_an_exact_code_comes_first(starter):
    assert codes(LOINC, "24323-8")[0] == "24323-8"
    assert codes(SNOMED, "271737000")[0] == "271737000"


def test_a_preferred_term_match_beats_a_synonym_match(db):
    indexing.store_concepts(
        SNOMED,
        [
            ConceptRecord(
                "100000001", "Alpha zeta", (Designation("synonym", "Mango"),), in_scope=True
            ),
            ConceptRecord("100000002", "Mango long preferred name", in_scope=True),
        ],
    )

    assert codes(SNOMED, "mango") == ["100000002", "100000001"]


def test_rank_beats_length_and_shorter_terms_come_first_among_equals(db):
    indexing.store_concepts(
        LOINC,
        [
            ConceptRecord("1-1", "Kiwi long name ranked", in_scope=True, rank=5),
            ConceptRecord("2-2", "Kiwi short", in_scope=True),
            ConceptRecord("3-3", "Kiwi shortest", in_scope=True, rank=9),
            ConceptRecord("4-4", "Kiwi", in_scope=True),
        ],
    )

    assert codes(LOINC, "kiwi") == ["1-1", "3-3", "4-4", "2-2"]


def test_a_common_prefix_gives_the_same_ranking_when_the_capped_probe_overflows(db, monkeypatch):
    indexing.store_concepts(
        LOINC,
        [
            ConceptRecord("1-1", "Kiwi long name ranked", in_scope=True, rank=5),
            ConceptRecord("2-2", "Kiwi short", in_scope=True),
            ConceptRecord("3-3", "Kiwi shortest", in_scope=True, rank=9),
            ConceptRecord("4-4", "Kiwi", in_scope=True),
            ConceptRecord("5-5", "Kiwi retired", active=False, in_scope=True),
            ConceptRecord("6-6", "Kiwi other scope", in_scope=False),
        ],
    )
    monkeypatch.setattr(search, "PROBE_CAP", 2)  # PostgreSQL then walks the key order

    assert codes(LOINC, "kiwi") == ["1-1", "3-3", "4-4", "2-2"]
    assert codes(LOINC, "kiwi", all_scopes=True, include_inactive=True) == [
        "1-1",
        "3-3",
        "4-4",
        "2-2",
        "6-6",
        "5-5",
    ]


@pytest.mark.parametrize("probe_cap", [search.PROBE_CAP, 1])
@pytest.mark.parametrize(
    "typed",
    ["h", "ha", "hae", "haem", "haemo", "haemog", "haemogl", "haemoglobinuria", "haemoglobinurias"],
)
def test_a_typed_word_of_any_length_matches_word_starts_only(db, monkeypatch, typed, probe_cap):
    # PostgreSQL indexes words' 1- to 6-character prefixes as whole lexemes and matches longer
    # typed words by prefix (migration 0004): both sides of that boundary must agree with FTS5.
    indexing.store_concepts(
        SNOMED,
        [
            ConceptRecord("100000001", "Haemoglobinuria", in_scope=True),
            ConceptRecord("100000002", "Haemog", in_scope=True),
            ConceptRecord("100000003", "Prehaemoglobinuria", in_scope=True),
        ],
    )
    monkeypatch.setattr(search, "PROBE_CAP", probe_cap)
    expected = {
        "haemogl": ["100000001"],
        "haemoglobinuria": ["100000001"],
        "haemoglobinurias": [],
    }.get(typed, ["100000002", "100000001"])

    query = typed if len(typed) >= search.MIN_CHARACTERS else f"{typed} haem"

    assert codes(SNOMED, query) == expected


def test_matching_ignores_case_and_accents_on_both_sides(starter):
    assert codes(SNOMED, "ANÉMIA")[0] == "271737000"
    assert codes(SNOMED, "anemia")[0] == "271737000"


def test_fewer_than_three_characters_return_nothing_without_touching_the_database(db):
    with CaptureQueriesContext(connection) as queries:
        found = [search.search(LOINC, text) for text in ("", "  ", "ab", "a-", "é")]

    assert found == [[], [], [], [], []]
    assert len(queries) == 0


def test_inactive_concepts_are_left_out_unless_asked_for(db):
    indexing.store_concepts(
        LOINC,
        [
            ConceptRecord("5-5", "Papaya retired", active=False, in_scope=True),
            ConceptRecord("6-6", "Papaya current", in_scope=True),
        ],
    )

    assert codes(LOINC, "papaya") == ["6-6"]
    assert codes(LOINC, "papaya", include_inactive=True) == ["6-6", "5-5"]
    assert codes(LOINC, "5-5") == []


def test_the_report_scope_is_the_default_and_all_loinc_is_an_option(db):
    indexing.store_concepts(
        LOINC,
        [
            ConceptRecord("7-7", "Quince panel", in_scope=True),
            ConceptRecord("8-8", "Quince", in_scope=False),
        ],
    )

    assert codes(LOINC, "quince") == ["7-7"]
    assert codes(LOINC, "quince", all_scopes=True) == ["8-8", "7-7"]


def test_the_limit_is_applied_and_capped(starter):
    assert len(search.search(SNOMED, "disorder", limit=3, all_scopes=True)) <= 3
    assert len(codes(LOINC, "plasma", limit=500, all_scopes=True)) == search.MAX_LIMIT


@pytest.mark.parametrize(
    "text",
    [
        '"hemo',
        "hemo*",
        "NEAR(hemo glob)",
        "hemo OR glob AND NOT x",
        "'; DROP TABLE terminology_concept; --",
        "hemo:* & !glob",
        "\\x00 % _ [] {} ^",
        "🩸🩸🩸 blood",
        "blood " * 1000,
        "x" * 5000,
    ],
)
def test_hostile_or_huge_queries_answer_normally(starter, text):
    found = search.search(LOINC, text, all_scopes=True)

    assert isinstance(found, list)
    assert Concept.objects.filter(system=LOINC).count() > 300


def test_an_emoji_padded_query_still_finds_its_words(starter):
    assert codes(SNOMED, "🩸 anemia 🩸")[0] == "271737000"


# --- import commands -------------------------------------------------------------------------


def write_loinc(path: Path, rows: list[list[str]]) -> Path:
    header = ["LOINC_NUM", "COMPONENT", "CLASS", "CLASSTYPE", "LONG_COMMON_NAME", "SHORTNAME"]
    header += ["EXTERNAL_COPYRIGHT_NOTICE", "STATUS"]
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def test_import_loinc_reads_the_real_core_table_and_a_reimport_updates_without_duplicates(db):
    call_command("import_loinc", str(LOINC_CORE), "--limit", "3000")
    first = {c.code: c.display for c in Concept.objects.filter(system=LOINC)}
    terms = SearchTerm.objects.count()

    call_command("import_loinc", str(LOINC_CORE), "--limit", "3000")

    assert len(first) == 3000
    assert {c.code: c.display for c in Concept.objects.filter(system=LOINC)} == first
    assert SearchTerm.objects.count() == terms
    assert ImportRecord.objects.filter(system=LOINC, source="release").count() == 2


def test_import_loinc_finds_the_table_inside_a_release_zip(db, tmp_path):
    import zipfile

    table = write_loinc(
        tmp_path / "Loinc.csv", [["99999-1", "Fig", "CHEM", "1", "Fig level", "Fig", "", "ACTIVE"]]
    )
    archive = tmp_path / "Loinc_2.78.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(table, "Loinc_2.78/LoincTable/Loinc.csv")

    call_command("import_loinc", str(archive))

    assert Concept.objects.get(system=LOINC, code="99999-1").display == "Fig level"


def test_a_failing_row_midway_leaves_the_previous_content_intact(db, tmp_path):
    good = [
        [f"{n}-0", "Date", "PANEL.CHEM", "1", f"Date panel {n}", "", "", "ACTIVE"]
        for n in range(1, 4)
    ]
    call_command("import_loinc", str(write_loinc(tmp_path / "v1.csv", good)))
    renamed = [
        [c, comp, k, t, name + " renamed", s, e, st] for c, comp, k, t, name, s, e, st in good
    ]
    rows = [*renamed * 1000, ["not-a-code", "x", "CHEM", "1", "Broken", "", "", "ACTIVE"]]

    with pytest.raises(CommandError) as failure:
        call_command("import_loinc", str(write_loinc(tmp_path / "v2.csv", rows)))

    assert "v2.csv, line 3002" in str(failure.value)
    assert sorted(Concept.objects.values_list("display", flat=True)) == [
        "Date panel 1",
        "Date panel 2",
        "Date panel 3",
    ]
    assert codes(LOINC, "date renamed") == []
    assert codes(LOINC, "date panel")[:1] == ["1-0"]


def test_a_wrong_format_file_names_the_file_line_and_expected_columns(db, tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,name\n1-1,x\n", encoding="utf-8")

    with pytest.raises(CommandError) as failure:
        call_command("import_loinc", str(wrong))

    message = str(failure.value)
    assert (
        "wrong.csv, line 1" in message and "LOINC_NUM" in message and "LONG_COMMON_NAME" in message
    )
    assert Concept.objects.count() == 0


def test_import_snomed_reads_the_real_concepts_file(db):
    call_command("import_snomed", str(SNOMED_CONCEPTS))

    assert Concept.objects.filter(system=SNOMED).count() == 23491
    assert Concept.objects.get(system=SNOMED, code="73211009").display == "Diabetes mellitus"
    assert codes(SNOMED, "hyperreactive airway")[0] == "195967001"


def write_rf2(folder: Path) -> Path:
    """A tiny RF2 snapshot with invented ids (synthetic, only to exercise the format)."""
    snapshot = folder / "SnomedCT_Synthetic" / "Snapshot" / "Terminology"
    refsets = folder / "SnomedCT_Synthetic" / "Snapshot" / "Refset" / "Language"
    snapshot.mkdir(parents=True)
    refsets.mkdir(parents=True)

    def write(path: Path, header: str, rows: list[str]) -> None:
        path.write_text("\r\n".join([header, *rows]) + "\r\n", encoding="utf-8")

    write(
        snapshot / "sct2_Concept_Snapshot_INT_20990101.txt",
        "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId",
        ["1000001\t20990101\t1\t1\t1", "1000002\t20990101\t1\t1\t1", "1000003\t20990101\t0\t1\t1"],
    )
    header = "\t".join(releases.RF2_DESCRIPTION_COLUMNS)
    fsn, synonym = releases.FSN_TYPE, releases.SYNONYM_TYPE
    descriptions = [
        ("2001", "1", "1000001", fsn, "Synthetic plumitis (disorder)"),
        ("2002", "1", "1000001", synonym, "Synthetic plumitis"),
        ("2003", "1", "1000001", synonym, "Plum fever"),
        ("2004", "0", "1000001", synonym, "Retired plum term"),
        ("2005", "1", "1000002", fsn, "Synthetic plum stone (physical object)"),
        ("2006", "1", "1000002", synonym, "Plum stone"),
        ("2007", "1", "1000003", synonym, "Inactive plum concept"),
        ("2008", "1", "1000001", synonym, "Unaccepted plum word"),
    ]
    write(
        snapshot / "sct2_Description_Snapshot-en_INT_20990101.txt",
        header,
        [
            "\t".join([i, "20990101", active, "1", concept, "en", kind, term, "1"])
            for i, active, concept, kind, term in descriptions
        ],
    )
    write(
        refsets / "der2_cRefset_LanguageSnapshot-en_INT_20990101.txt",
        "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\tacceptabilityId",
        [
            "a1\t20990101\t1\t1\t900000000000509007\t2001\t900000000000548007",
            "a2\t20990101\t1\t1\t900000000000509007\t2002\t900000000000548007",
            "a3\t20990101\t1\t1\t900000000000509007\t2003\t900000000000549004",
            "a5\t20990101\t1\t1\t900000000000509007\t2005\t900000000000548007",
            "a6\t20990101\t1\t1\t900000000000509007\t2006\t900000000000548007",
        ],
    )
    return folder / "SnomedCT_Synthetic"


def test_import_snomed_reads_an_rf2_snapshot_folder_active_rows_and_preferred_terms(db, tmp_path):
    call_command("import_snomed", str(write_rf2(tmp_path)))

    concepts = {c.code: c for c in Concept.objects.filter(system=SNOMED)}
    assert set(concepts) == {"1000001", "1000002"}
    assert concepts["1000001"].display == "Synthetic plumitis"
    assert concepts["1000001"].kind == "disorder" and concepts["1000001"].in_scope
    assert not concepts["1000002"].in_scope
    assert codes(SNOMED, "plum fev") == ["1000001"]
    assert codes(SNOMED, "retired plum") == [] and codes(SNOMED, "unaccepted plum") == []


def test_import_snomed_reads_an_rf2_zip_and_retires_concepts_a_newer_release_inactivates(
    db, tmp_path
):
    import shutil

    root = write_rf2(tmp_path / "release")
    indexing.store_concepts(
        SNOMED, [ConceptRecord("1000003", "Inactive plum concept", in_scope=True)]
    )
    archive = shutil.make_archive(str(tmp_path / "rf2"), "zip", root)

    call_command("import_snomed", archive)

    retired = Concept.objects.get(system=SNOMED, code="1000003")
    assert not retired.active
    assert codes(SNOMED, "inactive plum") == []


def test_import_snomed_refuses_a_folder_without_rf2_files(db, tmp_path):
    with pytest.raises(CommandError, match="sct2_Concept_Snapshot"):
        call_command("import_snomed", str(tmp_path))


# --- the starter set -------------------------------------------------------------------------


def test_every_starter_code_and_display_is_in_the_real_release_files():
    core = {}
    with gzip.open(LOINC_CORE, "rt", encoding="utf-8") as text:
        for row in csv.DictReader(text):
            core[row["LOINC_NUM"]] = row["LONG_COMMON_NAME"]
    with gzip.open(SNOMED_CONCEPTS, "rt", encoding="utf-8") as text:
        snomed = {row["concept_id"]: row["preferred_term"] for row in csv.DictReader(text)}

    for system, path in loading.STARTER_FILES.items():
        real = core if system == LOINC else snomed
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        assert len(rows) >= 200, path
        wrong = [(r["code"], r["display"]) for r in rows if real.get(r["code"]) != r["display"]]
        assert wrong == [], f"{path.name}: {wrong[:5]}"
    starter_codes = {
        (system, r["code"])
        for system, path in loading.STARTER_FILES.items()
        for r in csv.DictReader(path.open(encoding="utf-8"))
    }
    missing = [s for s in loading.load_local_synonyms() if (s[0], s[1]) not in starter_codes]
    assert missing == []


def test_loading_the_starter_set_twice_is_a_no_op_the_second_time(db):
    call_command("load_starter_terminology")
    counts = (Concept.objects.count(), SearchTerm.objects.count())

    with CaptureQueriesContext(connection) as queries:
        results = loading.load_starter_set()

    assert [r.skipped_because for r in results] == ["already loaded", "already loaded"]
    assert (Concept.objects.count(), SearchTerm.objects.count()) == counts
    assert len(queries) <= 4


def test_the_starter_set_does_not_overwrite_an_imported_release(db, tmp_path):
    rows = [["99999-1", "Fig", "CHEM", "1", "Fig level", "Fig", "", "ACTIVE"]]
    call_command("import_loinc", str(write_loinc(tmp_path / "Loinc.csv", rows)))

    results = loading.load_starter_set()

    assert results[0].skipped_because == "a release file is loaded"
    assert list(Concept.objects.filter(system=LOINC).values_list("code", flat=True)) == ["99999-1"]


def test_local_synonyms_survive_a_reimport_of_the_release(starter, tmp_path):
    rows = [
        [
            "24323-8",
            "Comprehensive metabolic 2000 panel",
            "PANEL.CHEM",
            "1",
            "Comprehensive metabolic 2000 panel - Serum or Plasma",
            "",
            "",
            "ACTIVE",
        ]
    ]

    call_command("import_loinc", str(write_loinc(tmp_path / "Loinc.csv", rows)))

    assert codes(LOINC, "cmp") == ["24323-8"]


# --- endpoints -------------------------------------------------------------------------------


def test_the_json_endpoint_returns_code_display_and_system(starter, clinician_client):
    response = clinician_client.get(
        "/terminology/search", {"system": "loinc", "q": "cbc", "limit": 2}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["results"][0] == {
        "code": "58410-2",
        "display": "CBC panel - Blood by Automated count",
        "system": "http://loinc.org",
    }
    assert len(body["results"]) == 2


def test_the_json_endpoint_refuses_an_unknown_system_and_a_silly_limit(starter, clinician_client):
    unknown = clinician_client.get("/terminology/search", {"system": "icd", "q": "cbc"})
    silly = clinician_client.get(
        "/terminology/search", {"system": "loinc", "q": "cbc", "limit": 9999}
    )

    assert unknown.status_code == 400 and "system" in unknown.json()["errors"]
    assert silly.status_code == 400 and "limit" in silly.json()["errors"]


def test_the_json_endpoint_and_the_page_need_a_signed_in_user(starter, client):
    for url in (
        "/terminology/search?system=loinc&q=cbc",
        "/terminology/",
        "/terminology/suggestions?system=loinc&q=cbc",
    ):
        response = client.get(url)

        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_the_suggestions_fragment_lists_options_with_display_and_system_code(
    starter, clinician_client
):
    response = clinician_client.get(
        "/terminology/suggestions",
        {"system": "snomed", "q": "anemia", "listbox": "conclusion-code-listbox"},
        headers={"HX-Request": "true"},
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'role="option" id="conclusion-code-listbox-option-0"' in html
    assert "Anemia" in html and "http://snomed.info/sct#271737000" in html


def test_the_lookup_page_has_two_accessible_comboboxes_and_works_without_javascript(
    starter, clinician_client
):
    page = clinician_client.get("/terminology/").content.decode()
    results = clinician_client.get(
        "/terminology/", {"system": "loinc", "q": "cmp"}
    ).content.decode()

    assert page.count('role="combobox"') == 2
    assert (
        'aria-controls="report-code-listbox"' in page
        and 'aria-controls="conclusion-code-listbox"' in page
    )
    assert 'aria-live="polite"' in page and "static/js/combobox.js" in page
    assert "style=" not in page and "<script>" not in page and "hx-on" not in page
    assert "http://loinc.org#24323-8" in results


def test_the_about_page_shows_the_licence_notices_of_the_loaded_content(db, client):
    empty = client.get("/terminology/about/").content.decode()
    loading.load_starter_set()

    loaded = client.get("/terminology/about/").content.decode()

    assert "Regenstrief" not in empty and "SNOMED International" not in empty
    assert "copyright © Regenstrief Institute" in loaded and "loinc.org/license" in loaded
    assert "Creative Commons Attribution 4.0" in loaded and "does not endorse" in loaded


def test_every_page_links_to_the_about_page(client, db):
    assert "/terminology/about/" in client.get("/accounts/login/").content.decode()


def test_the_json_body_is_plain_json(starter, clinician_client):
    response = clinician_client.get("/terminology/search", {"system": "snomed", "q": "ab"})

    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {"results": []}
