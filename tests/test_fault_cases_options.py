"""Bad options and option files given to the CLI: exit 2 and one line naming the option or file and the fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()


def run(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def unlearn(data, out, *extra):
    return run("unlearn", "--model", "tiny", "--data", data, "--out", out, *extra)


@pytest.mark.parametrize("case, extra, says", [
    ("O01", ["--method", "forgetall"], ["unknown method 'forgetall'", "choose one of grad_ascent"]),
    ("O02", ["--method", "npo", "--opt", "gamma=1"], ["method 'npo' has no option 'gamma'", "options: beta"]),
    ("O03", ["--method", "npo", "--opt", "beta"], ["--opt expects key=value, got 'beta'"]),
    ("O04", ["--method", "npo", "--opt", "beta=abc"], ["option 'beta' expects a value like 0.1, got 'abc'"]),
    ("O06", ["--method", "grad_ascent", "--epochs", "-1"], ["epochs must be > 0 (got -1.0)"]),
    ("O07", ["--method", "grad_ascent", "--batch-size", "0"], ["batch_size must be >= 1 (got 0)"]),
    ("O08", ["--method", "grad_ascent", "--lr", "nan"], ["lr must be > 0 (got nan)"]),
    ("O10", ["--method", "npo", "--opt", "beta=-1"], ["beta must be > 0 (got -1.0)"]),
    ("O19", ["--method", "grad_ascent", "--warmup-ratio", "1.5"], ["warmup_ratio must be in [0, 1) (got 1.5)"]),
])
def test_bad_method_options_are_refused_before_any_work(tiny_data_dir, tmp_path, case, extra, says):
    code, text = unlearn(tiny_data_dir, tmp_path / "out", *extra)
    assert code == 2, text
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not (tmp_path / "out" / "model").exists()


def test_lr_that_is_not_a_number_is_a_usage_error(tiny_data_dir, tmp_path):  # O05
    code, text = unlearn(tiny_data_dir, tmp_path / "out", "--method", "grad_ascent", "--lr", "abc")
    assert code == 2 and "Invalid value for '--lr'" in text


def test_infinite_lr_stops_at_the_first_step_naming_the_fix(tiny_data_dir, tmp_path):  # O09
    code, text = unlearn(tiny_data_dir, tmp_path / "out", "--method", "grad_ascent", "--max-steps", "3",
                         "--lr", "inf")
    assert code == 2 and "the loss became nan at step 1" in text and "Lower the learning rate (now inf)" in text


def test_rmu_layer_out_of_range(tiny_data_dir, tmp_path):  # O11
    code, text = unlearn(tiny_data_dir, tmp_path / "out", "--method", "rmu", "--max-steps", "1", "--opt", "layer=99")
    assert code == 2 and "RMU layer 99 does not exist" in text and "valid layers are 0..1" in text


@pytest.mark.parametrize("case, args, says", [
    ("O12", ["--suite", "nosuch"], ["unknown evaluation suite 'nosuch'", "the suites are tofu"]),
    ("O13", ["--suite", "tofu", "--opt", "nosuch=1"], ["suite 'tofu' has no option 'nosuch'", "(options: forget"]),
    ("O15", ["--eval-limit", "0"], ["eval_limit must be a whole number >= 1 (got 0)", "leave it out"]),
])
def test_bad_evaluation_options(tmp_path, case, args, says):
    code, text = run("eval", "--model", "tiny", "--out", tmp_path / "r.json", *args)
    assert code == 2, text
    for phrase in says:
        assert phrase in text, (phrase, text)


def test_bad_suite_option_value(tiny_data_dir, tmp_path):  # O14
    code, text = run("eval", "--model", "tiny", "--suite", "wmdp", "--data", tiny_data_dir, "--opt", "backend=xyz",
                     "--out", tmp_path / "r.json")
    assert code == 2 and "option backend must be one of 'unlearnkit', 'lm_eval' (got 'xyz')" in text


def test_make_data_with_more_forget_people_than_people(tmp_path):  # O16
    code, text = run("make-data", "--out", tmp_path / "d", "--people", "3", "--forget", "5")
    assert code == 2 and "n_forget must be between 1 and n_people - 1 = 2 (got 5 of 3 people)" in text


@pytest.mark.parametrize("case, content, says", [
    ("O17", '["Zoé Marchand"]'.encode("latin-1"), ["is not UTF-8 text", "save it as UTF-8"]),
    ("O18", b'["Ann Lee", 5]', ["item 1: a target is a name (a string) or an object", "got int 5", "fix that item"]),
    ("O18", b'["Ann Lee", ', ["is not valid JSON", "at line 1 column", "fix it"]),
    ("O18", b'[{"name": "Ann Lee", "aliases": "Annie"}]',
     ["item 0: target 'Ann Lee': 'aliases' must be a list of strings", 'write ["Annie"]']),
    ("O18", b'[{"name": "Ann Lee", "facts": [1]}]', ["'facts' must be a list of strings"]),
    ("O18", b"[]", ["must hold a non-empty list of targets", "a JSON list such as"]),
    ("O18", None, ["does not exist", "give the path of a JSON list"]),
])
def test_alu_targets_file_problems_name_the_file_and_fix(tiny_data_dir, tmp_path, case, content, says):
    targets = tmp_path / "targets.json"
    if content is not None:
        targets.write_bytes(content)
    code, text = unlearn(tiny_data_dir, tmp_path / "guard", "--method", "alu", "--opt", f"targets_file={targets}",
                         "--opt", "embedder=hashing")
    assert code == 2, text
    assert str(targets) in text and "Traceback" not in text
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not (tmp_path / "guard" / "guard.json").exists()


def test_alu_targets_file_with_a_bom_and_objects_is_read(tmp_path):
    from unlearnkit.methods.alu import load_targets_file

    path = tmp_path / "t.json"
    path.write_bytes(b'\xef\xbb\xbf{"targets": ["Ann Lee", {"name": "Bo Chen", "aliases": ["Bo"], "facts": ["x"]}]}')
    targets = load_targets_file(path)
    assert [t.names for t in targets] == [("Ann Lee",), ("Bo Chen", "Bo")] and targets[1].facts == ("x",)


@pytest.mark.parametrize("case, content, says", [
    ("O20", None, ["no reference file at", "give the JSON that 'unlearnkit eval --out' wrote"]),
    ("O21", "hello", ["is not a JSON reference", "give the JSON that 'unlearnkit eval --out' wrote"]),
    ("O22", '{"foo": 1}', ["is not an unlearnkit evaluation reference", "a result has 'summary' and 'per_example'"]),
])
def test_eval_reference_problems_are_found_before_the_evaluation(tiny_data_dir, tmp_path, case, content, says):
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_text(content)
    code, text = run("eval", "--model", "tiny", "--no-generate", "--data", tiny_data_dir, "--reference", ref,
                     "--out", tmp_path / "r.json")
    assert code == 2 and str(ref) in text
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("case, content, says", [
    ("O23", None, ["no result file at", "give a result JSON"]),
    ("O24", '{"foo": 1}', ["not a result unlearnkit reports on", "expected an evaluation, attacks, scale or bundle"]),
])
def test_report_on_a_bad_file(tmp_path, case, content, says):
    source = tmp_path / "in.json"
    if content is not None:
        source.write_text(content)
    code, text = run("report", source, "--out", tmp_path / "r.html")
    assert code == 2 and str(source) in text
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not (tmp_path / "r.html").exists()
