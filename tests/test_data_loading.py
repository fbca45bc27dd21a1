import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unlearnkit.data import load_split
from unlearnkit.errors import DataError

ROWS = [{"question": "Q1?", "answer": "A1.", "perturbed_answer": ["P1", "P2"], "paraphrased_answer": "B1.",
         "option1": "x"},
        {"question": "Q2?", "answer": "A2.", "perturbed_answer": "P3"}]

# Parquet columns have one type: a single perturbed answer is a one-item list there.
PARQUET_ROWS = [ROWS[0], {**ROWS[1], "perturbed_answer": ["P3"]}]


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.parametrize("fmt", ["jsonl", "json_list", "json_lines", "parquet", "shards"])
def test_every_export_form_loads_the_same_records(tmp_path, fmt):
    if fmt == "jsonl":
        _jsonl(tmp_path / "s.jsonl", ROWS)
    elif fmt == "json_list":
        (tmp_path / "s.json").write_text(json.dumps(ROWS))
    elif fmt == "json_lines":
        _jsonl(tmp_path / "s.json", ROWS)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), tmp_path / "s.parquet")
    else:
        (tmp_path / "data").mkdir()
        pq.write_table(pa.Table.from_pylist(PARQUET_ROWS[:1]), tmp_path / "data" / "s-00000-of-00002.parquet")
        pq.write_table(pa.Table.from_pylist(PARQUET_ROWS[1:]), tmp_path / "data" / "s-00001-of-00002.parquet")
    records = load_split(tmp_path, "s")
    assert [r.question for r in records] == ["Q1?", "Q2?"]
    assert records[0].perturbed_answers == ("P1", "P2") and records[1].perturbed_answers == ("P3",)
    assert records[0].paraphrased_answer == "B1."
    assert records[0].meta.get("option1") == "x"


def test_unknown_split_lists_available(tmp_path):
    _jsonl(tmp_path / "forget.jsonl", ROWS)
    _jsonl(tmp_path / "retain.jsonl", ROWS)
    with pytest.raises(DataError, match=r"unknown split 'forgt'.*available splits are forget, retain"):
        load_split(tmp_path, "forgt")


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nope", "forget")


def test_bad_json_line_names_file_and_line(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"s.jsonl line 2 is not valid JSON"):
        load_split(tmp_path, "s")


@pytest.mark.parametrize("row,match", [
    ({"question": "Q?"}, "field 'answer' is missing"),
    ({"question": "", "answer": "A"}, "field 'question' must be a non-empty string"),
    ({"question": "Q?", "answer": 3}, "field 'answer' must be a non-empty string"),
    ({"question": "Q?", "answer": "A", "perturbed_answer": [1]}, "perturbed_answer"),
])
def test_malformed_records_name_the_record_and_field(tmp_path, row, match):
    _jsonl(tmp_path / "s.jsonl", [ROWS[0], row])
    with pytest.raises(DataError, match=match) as info:
        load_split(tmp_path, "s")
    assert "line 2" in str(info.value)


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "s.jsonl").write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        load_split(tmp_path, "s")


def test_limit_keeps_the_first_records(tmp_path):
    _jsonl(tmp_path / "s.jsonl", ROWS)
    assert [r.question for r in load_split(tmp_path, "s", limit=1)] == ["Q1?"]


# -- more layouts and error cases ---------------------------------------------------------------
def test_split_directory_of_parquet_shards_and_listing(tmp_path):
    (tmp_path / "forget").mkdir()
    pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), tmp_path / "forget" / "train-0.parquet")
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), tmp_path / "data" / "retain-perturbed-00000-of-00001.parquet")
    (tmp_path / "task.json").write_text("{}")
    assert [r.answer for r in load_split(tmp_path, "forget")] == ["A1.", "A2."]
    assert len(load_split(tmp_path, "retain-perturbed")) == 2
    with pytest.raises(DataError, match=r"available splits are forget, retain-perturbed;"):
        load_split(tmp_path, "retain")


def test_records_round_trip_through_to_json(tmp_path):
    from unlearnkit.data import QARecord

    records = [QARecord("Q?", "A.", "B.", ("P1.", "P2."), "Q2?", "Ann Vesk", ("A",), {"option1": "x", "n": 3}),
               QARecord("R?", "S.")]
    _jsonl(tmp_path / "s.jsonl", [r.to_json() for r in records])
    loaded = load_split(tmp_path, "s")
    assert loaded == records and loaded[0].meta == {"option1": "x", "n": 3} and loaded[1].meta == {}


def test_json_single_object_and_utf8_bom(tmp_path):
    (tmp_path / "one.json").write_text(json.dumps(ROWS[0], indent=2))
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"question": "Ré?", "answer": "Oui."}).encode())
    assert load_split(tmp_path, "one")[0].perturbed_answers == ("P1", "P2")
    assert load_split(tmp_path, "bom")[0].question == "Ré?"


def test_keywords_and_subject_are_read(tmp_path):
    _jsonl(tmp_path / "s.jsonl", [{"question": "Q?", "answer": "A.", "keywords": "Tarn", "subject": "Ann"}])
    r = load_split(tmp_path, "s")[0]
    assert r.keywords == ("Tarn",) and r.subject == "Ann" and r.meta == {}


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "f.jsonl").write_text("")
    with pytest.raises(DataError, match=r"f.jsonl' is a file, not a data directory"):
        load_split(tmp_path / "f.jsonl", "s")


def test_broken_json_list_names_file_and_line(tmp_path):
    (tmp_path / "s.json").write_text('[\n{"question": "Q?", "answer": "A."},\n{oops}\n]')
    with pytest.raises(DataError, match=r"s.json is not valid JSON \(line 3"):
        load_split(tmp_path, "s")


@pytest.mark.parametrize("row,match", [
    ("just text", "expected a JSON object"),
    ({"question": "Q?", "answer": "A.", "paraphrased_answer": 5}, "field 'paraphrased_answer' must be a string"),
    ({"question": "Q?", "answer": "A.", "perturbed_answer": ["ok", ""]}, "field 'perturbed_answer' must be"),
    ({"question": "Q?", "answer": "A.", "keywords": [1]}, "field 'keywords' must be"),
    ({"answer": "A."}, "field 'question' is missing"),
    ({"question": "Q?", "answer": "   "}, "field 'answer' must be a non-empty string"),
])
def test_bad_record_in_json_list_names_file_record_and_field(tmp_path, row, match):
    (tmp_path / "s.json").write_text(json.dumps([ROWS[0], row]))
    with pytest.raises(DataError, match=match) as info:
        load_split(tmp_path, "s")
    assert "s.json record 1" in str(info.value)


def test_jsonl_error_names_line_and_record_index(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps({"question": "Q?"}) + "\n")
    with pytest.raises(DataError, match=r"s.jsonl line 3 \(record 1\): field 'answer' is missing"):
        load_split(tmp_path, "s")


def test_empty_split_message_names_the_file_and_fix(tmp_path):
    (tmp_path / "s.json").write_text("[]")
    with pytest.raises(DataError, match=r"split 's' \(.*s.json\) is empty.*pick another split"):
        load_split(tmp_path, "s")


def test_non_utf8_file(tmp_path):
    (tmp_path / "s.jsonl").write_bytes(b'{"question": "\xff"}\n')
    with pytest.raises(DataError, match=r"s.jsonl is not UTF-8"):
        load_split(tmp_path, "s")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "s.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"s.parquet is not a readable Parquet file"):
        load_split(tmp_path, "s")


def test_bad_limit(tmp_path):
    _jsonl(tmp_path / "s.jsonl", ROWS)
    with pytest.raises(DataError, match="limit must be"):
        load_split(tmp_path, "s", limit=-1)


# -- the real TOFU data -------------------------------------------------------------------------
TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
TOFU_COUNTS = {"full": 4000, "retain90": 3600, "retain95": 3800, "retain99": 3960, "forget01": 40, "forget05": 200,
               "forget10": 400, "forget01_perturbed": 40, "forget05_perturbed": 200, "forget10_perturbed": 400,
               "retain_perturbed": 400, "holdout01": 40, "holdout05": 200, "holdout10": 400, "real_authors": 100,
               "real_authors_perturbed": 100, "world_facts": 117, "world_facts_perturbed": 117}


@pytest.fixture(scope="module")
def tofu():
    if not (TOFU / "full.jsonl").is_file():
        pytest.skip(f"the real TOFU data is not at {TOFU} (it ships in the shared data folder)")
    return {name: load_split(TOFU, name) for name in TOFU_COUNTS}


def test_tofu_counts_and_fields(tofu):
    assert {name: len(records) for name, records in tofu.items()} == TOFU_COUNTS
    for name in ("forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed"):
        for r in tofu[name]:
            assert len(r.perturbed_answers) == 5 and r.paraphrased_answer and r.paraphrased_question, name
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(len(r.perturbed_answers) == 3 for r in tofu[name]), name
    assert set(tofu["real_authors"][0].meta) == {"option1", "option2", "option3", "option4"}


def test_tofu_split_relations(tofu):
    full = tofu["full"]
    assert full[:3600] == tofu["retain90"] and full[:3800] == tofu["retain95"] and full[:3960] == tofu["retain99"]
    assert full[3600:] == tofu["forget10"] and full[-200:] == tofu["forget05"] and full[-40:] == tofu["forget01"]
    assert [r.question for r in tofu["forget10_perturbed"]] == [r.question for r in tofu["forget10"]]
    in_full = {r.question for r in full}
    assert not any(r.question in in_full for r in tofu["holdout10"])
