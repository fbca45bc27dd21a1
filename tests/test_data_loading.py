import json

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
