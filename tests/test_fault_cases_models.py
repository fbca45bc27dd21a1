"""Bad --model values through the CLI: missing, damaged, unreachable, broken guard.json. Exit 2, one line naming
the path and the fix; or the right behaviour where the input is valid."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()
DOWN = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


def run(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def evaluate(model, tmp_path):
    return run("eval", "--model", model, "--no-generate", "--eval-limit", "2", "--out", tmp_path / "r.json")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from unlearnkit.models.tiny import load_tiny

    path = tmp_path_factory.mktemp("models") / "tiny"
    load_tiny().save(path)
    return path


@pytest.fixture(scope="module")
def saved_guard(saved_tiny, tmp_path_factory, tiny_data_dir):
    out = tmp_path_factory.mktemp("guards") / "guard"
    code, text = run("unlearn", "--method", "prompting", "--model", saved_tiny, "--data", tiny_data_dir, "--out", out)
    assert code == 0, text
    return out


def damaged(saved_tiny, tmp_path, case):
    bad = tmp_path / case
    shutil.copytree(saved_tiny, bad)
    weights, config = bad / "model.safetensors", bad / "config.json"
    if case == "M02":
        config.unlink()
    elif case == "M04":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "M05":
        weights.write_bytes(bytes(range(256)) * (weights.stat().st_size // 256))
    elif case == "M06":
        config.write_text("{not json")
    elif case == "M07":
        cfg = json.loads(config.read_text())
        cfg["hidden_size"] *= 2
        config.write_text(json.dumps(cfg))
    elif case == "M08":
        for p in bad.glob("tokenizer*"):
            p.unlink()
    return bad


@pytest.mark.parametrize("case, says", [
    ("M02", ["is not a model: expected config.json"]),
    ("M04", ["a weights file is corrupt or truncated", "restore the directory"]),
    ("M05", ["a weights file is corrupt or truncated", "restore the directory"]),
    ("M06", ["config.json' is not a valid JSON file", "restore the directory"]),
    ("M07", ["config.json does not match the saved weights", "restore the directory"]),
    ("M08", ["could not load the tokenizer", "copy tokenizer.json and tokenizer_config.json"]),
])
def test_a_damaged_model_directory_is_one_clear_line(saved_tiny, tmp_path, case, says):
    bad = damaged(saved_tiny, tmp_path, case)
    code, text = evaluate(bad, tmp_path)
    assert code == 2, text
    assert str(bad) in text and "Traceback" not in text
    for phrase in says:
        assert phrase in text, (phrase, text)


def test_missing_path_and_empty_directory(tmp_path):  # M01, M03
    code, text = evaluate(tmp_path / "nope", tmp_path)
    assert code == 2 and "nope' does not exist" in text and "give a Hugging Face model directory" in text
    (tmp_path / "empty").mkdir()
    code, text = evaluate(tmp_path / "empty", tmp_path)
    assert code == 2 and "empty' is not a model" in text and "guard.json (guard)" in text


def test_an_endpoint_that_is_down(tmp_path, monkeypatch):  # M09, M10, M11
    from unlearnkit.models.remote import OpenAIChatModel

    # every retry still runs (4 attempts); only the back-off between them (0.5 + 1 + 2 s) is cut short
    monkeypatch.setattr(OpenAIChatModel, "_sleep_for", lambda self, attempt, retry_after: 0.01)
    code, text = run("ask", "--model", f"{DOWN}#m", "hello")
    assert code == 2 and f"could not reach {DOWN}/chat/completions: is the server running?" in text
    assert "4 attempt(s)" in text
    code, text = run("ask", "--model", DOWN, "hello")
    assert code == 2 and f"could not reach {DOWN}/models: is the server running?" in text
    assert "4 attempt(s)" in text
    code, text = evaluate(f"{DOWN}#m", tmp_path)
    assert code == 2 and "cannot score() answers" in text and "Evaluate it by generation" in text


def write_guard(saved_guard, tmp_path, edit):
    bad = tmp_path / "guard"
    shutil.copytree(saved_guard, bad)
    payload = json.loads((bad / "guard.json").read_text())
    result = edit(payload, bad)
    (bad / "guard.json").write_text(result if isinstance(result, str) else json.dumps(result))
    return bad


@pytest.mark.parametrize("case, edit, says", [
    ("M12", lambda p, d: {k: v for k, v in p.items() if k != "method"}, ["has no 'method'", "recreate it"]),
    ("M13", lambda p, d: {**p, "base_model": str(d)}, ["names its own directory as base_model",
                                                        "point base_model at the model the guard wraps"]),
    ("M14b", lambda p, d: {**p, "method": "nosuch"}, ["unknown method 'nosuch'", "recreate the guard"]),
    ("M14c", lambda p, d: {**p, "options": {"instruction": 5}}, ["option 'instruction' must be a string, got 5",
                                                                 "fix it, or recreate the guard"]),
    ("M14d", lambda p, d: {**p, "options": {"instruction": "Hide {secret}."}}, ["unknown placeholder",
                                                                                "recreate the guard"]),
    ("M14e", lambda p, d: {**p, "method": "npo"}, ["names 'npo', which changes weights and is not a guard"]),
    ("M14f", lambda p, d: {**p, "options": [1]}, ["'options' must be a JSON object"]),
    ("M14g", lambda p, d: {**p, "targets": [5]}, ["a target is a name", "recreate the guard"]),
    ("M15", lambda p, d: [1, 2], ["must hold a JSON object", "recreate it"]),
    ("M16", lambda p, d: "{oops", ["is not valid JSON", "recreate it with 'unlearnkit unlearn'"]),
])
def test_a_broken_guard_file_names_the_file_and_fix(saved_guard, tmp_path, case, edit, says):
    bad = write_guard(saved_guard, tmp_path, edit)
    code, text = run("ask", "--model", bad, "hi")
    assert code == 2, text
    assert str(bad / "guard.json") in text and "Traceback" not in text
    for phrase in says:
        assert phrase in text, (phrase, text)


def test_an_option_no_longer_known_is_dropped_with_a_warning(saved_guard, tmp_path, caplog):  # M14
    from unlearnkit.models import load_model

    bad = write_guard(saved_guard, tmp_path, lambda p, d: {**p, "options": {**p["options"], "retired": 1}})
    with caplog.at_level("WARNING"):
        guard = load_model(bad)
    assert guard.method == "prompting" and guard.target_names
    assert "ignoring option(s) retired" in caplog.text and str(bad / "guard.json") in caplog.text


def test_unlearn_reads_a_run_directory_refuses_out_inside_the_input_and_keeps_it(saved_tiny, tiny_data_dir, tmp_path):
    import hashlib

    digest = lambda: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in saved_tiny.iterdir()}  # noqa: E731
    before = digest()
    run_dir = tmp_path / "run"  # M17: a run directory written by unlearn is a model for the next unlearn
    code, text = run("unlearn", "--method", "grad_ascent", "--model", saved_tiny, "--data", tiny_data_dir,
                     "--max-steps", "1", "--out", run_dir)
    assert code == 0, text
    code, text = run("unlearn", "--method", "grad_ascent", "--model", run_dir, "--data", tiny_data_dir,
                     "--max-steps", "1", "--out", tmp_path / "again")
    assert code == 0 and (tmp_path / "again" / "model" / "config.json").is_file(), text
    code, text = run("unlearn", "--method", "grad_ascent", "--model", saved_tiny, "--data", tiny_data_dir,
                     "--max-steps", "1", "--out", saved_tiny / "sub")  # M18
    assert code == 2 and "is inside the input model" in text and "choose another directory" in text
    assert digest() == before  # R4: the input model is never modified


def test_the_load_report_is_shown_only_for_a_model_that_loads(saved_tiny, tmp_path):  # M07: one line
    import logging

    from safetensors.torch import load_file, save_file

    from unlearnkit.errors import ModelLoadError
    from unlearnkit.models import load_model

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.utils.loading_report")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with pytest.raises(ModelLoadError, match="config.json does not match the saved weights"):
            load_model(damaged(saved_tiny, tmp_path, "M07"))
        assert not [m for m in seen if "LOAD REPORT" in m]
        missing = tmp_path / "missing"
        shutil.copytree(saved_tiny, missing)
        weights = load_file(missing / "model.safetensors")
        weights.pop("model.norm.weight")
        save_file(weights, missing / "model.safetensors", metadata={"format": "pt"})
        load_model(missing)  # loads, with the weight re-initialised: transformers' report says so
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    reports = [m for m in seen if "LOAD REPORT" in m]
    assert len(reports) == 1 and "model.norm.weight" in reports[0] and "MISSING" in reports[0]
