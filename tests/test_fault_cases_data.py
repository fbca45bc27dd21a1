"""Bad benchmark directories given to the CLI: each is one line naming the file (or split) and the fix, exit 2."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()


def unlearn(data, *extra) -> tuple[int, str]:
    """``unlearn`` on ``data`` with the tiny model: the data is checked before the model loads."""
    result = runner.invoke(app, ["unlearn", "--method", "grad_ascent", "--model", "tiny", "--max-steps", "1",
                                 "--data", str(data), "--out", str(data.parent / "out"), *extra])
    return result.exit_code, " ".join(result.output.split())


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@pytest.fixture
def data(tiny_data_dir, tmp_path):
    """A fresh copy of the small generated benchmark, to damage."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_data_dir, copy)
    return copy


def damage(case, d):
    forget = d / "forget.jsonl"
    if case == "D03":  # line 3 is not JSON
        lines = forget.read_text().splitlines()
        lines[2] = lines[2][:30] + "}oops"
        forget.write_text("\n".join(lines) + "\n")
    elif case == "D04":  # other field names
        write(forget, [{"prompt": r["question"], "response": r["answer"]} for r in rows(forget)])
    elif case == "D05":
        forget.write_text("")
    elif case == "D06":
        forget.write_text("\n   \n\n")
    elif case == "D07":  # the same question in forget and retain
        write(d / "retain.jsonl", rows(d / "retain.jsonl") + [rows(forget)[0]])
    elif case == "D08":  # the same question, with a no-break space and without its '?'
        first = dict(rows(forget)[0])
        first["question"] = first["question"].replace(" ", "\u00a0", 1).rstrip("?")
        write(d / "retain.jsonl", rows(d / "retain.jsonl") + [first])
    elif case == "D09":  # a latin-1 line
        forget.write_bytes(forget.read_bytes() + '{"question": "Qui est Zoé?", "answer": "Zoé"}\n'.encode("latin-1"))
    elif case == "D12":
        import pyarrow as pa
        import pyarrow.parquet as pq

        forget.unlink()
        pq.write_table(pa.table({"prompt": ["a"], "response": ["b"]}), d / "forget.parquet")
    elif case == "D13":
        import pyarrow as pa
        import pyarrow.parquet as pq

        forget.unlink()
        pq.write_table(pa.table({"question": [1, 2], "answer": [3, 4]}), d / "forget.parquet")
    elif case == "D14":
        forget.unlink()
        (d / "forget.parquet").write_bytes(b"\x07not parquet" * 100)
    elif case == "D15":
        task = json.loads((d / "task.json").read_text())
        task["forgett"] = task.pop("forget")
        (d / "task.json").write_text(json.dumps(task))
    elif case == "D16":
        (d / "task.json").write_text("{\n,}")
    elif case == "D17":
        forget.unlink()
        (d / "forget.json").write_text('[\n{"question": "a" "answer": "b"}]')
    elif case == "D18":
        lines = forget.read_text().splitlines()
        lines[1] = '["q", "a"]'
        forget.write_text("\n".join(lines) + "\n")
    elif case == "D20":
        (d / "retain.jsonl").unlink()


@pytest.mark.parametrize("case, says", [
    ("D03", [r"forget.jsonl line 3 is not valid JSON", "fix or delete that line"]),
    ("D04", [r"forget.jsonl line 1 (record 0): field 'question' is missing", "rename its fields"]),
    ("D05", ["forget split 'forget'", "has 0 records", "pick another split with --forget"]),
    ("D06", ["forget split 'forget'", "has 0 records", "pick another split with --forget"]),
    ("D07", ["1 question(s) are in both the forget split 'forget' and the retain split 'retain'",
             "remove them from one of the two splits"]),
    ("D08", ["1 question(s) are in both the forget split", "remove them from one of the two splits"]),
    ("D09", ["forget.jsonl is not UTF-8 text", "on line", "save it as UTF-8"]),
    ("D12", ["forget.parquet record 0: field 'question' is missing", "rename its fields"]),
    ("D13", ["forget.parquet record 0: field 'question' must be a non-empty string", "fix the record"]),
    ("D14", ["forget.parquet is not a readable Parquet file", "re-export the split"]),
    ("D15", ["task.json: unknown key(s) forgett", "fix the spelling"]),
    ("D16", ["task.json is not valid JSON", "fix it, or delete it"]),
    ("D17", ["forget.json is not valid JSON (line 2", "export the split again as JSON Lines"]),
    ("D18", ["forget.jsonl line 2 (record 1): expected a JSON object", "got list"]),
    ("D20", ["retain split 'retain' not found", "available splits are forget", "pick another split with --retain"]),
])
def test_a_damaged_benchmark_is_one_clear_line(data, case, says):
    damage(case, data)
    code, text = unlearn(data)
    assert code == 2, text
    assert str(data) in text and "Traceback" not in text
    for phrase in says:
        assert phrase in text, (phrase, text)


def test_missing_or_file_data_directory(tmp_path):  # D01, D02
    code, text = unlearn(tmp_path / "does-not-exist")
    assert code == 2 and "does-not-exist' does not exist" in text and "give a benchmark directory" in text
    (tmp_path / "afile.txt").write_text("x")
    code, text = unlearn(tmp_path / "afile.txt")
    assert code == 2 and "is a file, not a directory" in text and "give a benchmark directory" in text


def test_a_huge_record_is_refused_before_any_memory_blows_up(data):  # D10 (forget), D11 (an eval split)
    records = rows(data / "forget.jsonl")
    records[0]["answer"] = "word " * 50_000
    write(data / "forget.jsonl", records)
    code, text = unlearn(data)
    assert code == 2 and "forget.jsonl line 1 (record 0): field 'answer' holds 250,000 characters" in text
    assert "split or shorten that record" in text
    write(data / "forget.jsonl", records[1:])
    perturbed = rows(data / "forget_perturbed.jsonl")
    perturbed[0]["perturbed_answer"] = ["word " * 50_000]
    write(data / "forget_perturbed.jsonl", perturbed)
    result = runner.invoke(app, ["eval", "--model", "tiny", "--no-generate", "--data", str(data),
                                 "--out", str(data.parent / "e.json")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "forget_perturbed.jsonl line 1 (record 0): field 'perturbed_answer'" in text


def test_eval_split_without_perturbed_answers(data):  # D19
    write(data / "forget_perturbed.jsonl",
          [{k: v for k, v in r.items() if k != "perturbed_answer"} for r in rows(data / "forget_perturbed.jsonl")])
    result = runner.invoke(app, ["eval", "--model", "tiny", "--no-generate", "--data", str(data),
                                 "--out", str(data.parent / "e.json")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "forget_eval split 'forget_perturbed'" in text and "no 'perturbed_answer'" in text
    assert "use a *_perturbed split" in text
    assert not (data.parent / "e.json").exists()


def test_bom_and_crlf_files_load_as_usual(data, tiny_data_dir):  # D21
    from unlearnkit.data import load_task

    forget = data / "forget.jsonl"
    forget.write_bytes(b"\xef\xbb\xbf" + forget.read_bytes().replace(b"\n", b"\r\n"))
    assert load_task(data).forget == load_task(tiny_data_dir).forget


def test_a_missing_split_or_an_empty_directory_lists_what_there_is(data, tmp_path):  # D22, D23
    code, text = unlearn(data, "--forget", "forget99")
    assert code == 2 and "forget split 'forget99' not found" in text
    assert "available splits are forget, forget_perturbed" in text and "pick another split with --forget" in text
    empty = tmp_path / "emptydir"
    empty.mkdir()
    code, text = unlearn(empty)
    assert code == 2 and str(empty) in text and "holds no .jsonl, .json or .parquet split files" in text


def test_overlap_key_ignores_spacing_case_and_punctuation_only():
    from unlearnkit.data.task import overlap_key

    assert overlap_key("In which year was Ann born?") == overlap_key("in\u00a0which  year was ANN born")
    assert overlap_key("Ｗho is Ann?") == overlap_key("who is ann")  # NFKC: fullwidth letters
    assert overlap_key("Who is Ann?") != overlap_key("Who is Anne?")
    assert overlap_key("Où est Zoé ?") != overlap_key("Ou est Zoe")  # accents are letters, not punctuation
