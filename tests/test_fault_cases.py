"""Cases of the reliability probe: each ends in one clear line naming the file and the fix."""

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.errors import DataError, ModelLoadError

runner = CliRunner()


@pytest.mark.parametrize("content, says", [
    (None, "no reference file"),
    ("{not json", "is not a JSON reference"),
    ('{"foo": 1}', "is not an unlearnkit evaluation reference"),
])
def test_eval_reference_is_checked_before_the_evaluation(tmp_path, tiny_data_dir, content, says):
    ref = tmp_path / "ref.json"
    if content is not None:
        ref.write_text(content)
    result = runner.invoke(app, ["eval", "--model", "tiny", "--data", str(tiny_data_dir), "--reference", str(ref),
                                 "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.json").exists()


def test_report_on_bad_files_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"foo": 1}')
    for target, says in ((tmp_path / "nope.json", "no result file"), (tmp_path / "bad.json", "not a result")):
        result = runner.invoke(app, ["report", str(target), "--out", str(tmp_path / "r.html")])
        assert result.exit_code == 2 and says in result.output, result.output


@pytest.mark.parametrize("payload, says", [
    ({"base_model": "tiny"}, "has no 'method'"),
    ({"method": "prompting"}, "has no 'base_model'"),
    ([1, 2], "must hold a JSON object"),
    ("SELF", "names its own directory"),
])
def test_broken_guard_files_are_clear_errors(tmp_path, payload, says):
    from unlearnkit.models import load_model

    guard = tmp_path / "g"
    guard.mkdir()
    if payload == "SELF":
        payload = {"method": "prompting", "base_model": str(guard)}
    (guard / "guard.json").write_text(json.dumps(payload))
    with pytest.raises(ModelLoadError, match=says):
        load_model(guard)


def test_a_cycle_of_guards_is_a_clear_error(tmp_path):
    from unlearnkit.models import load_model

    a, b = tmp_path / "a", tmp_path / "b"
    for here, there in ((a, b), (b, a)):
        here.mkdir()
        (here / "guard.json").write_text(json.dumps({"method": "prompting", "base_model": str(there)}))
    with pytest.raises(ModelLoadError, match="more than 8 deep"):
        load_model(a)


def test_outputs_follow_the_umask(tmp_path, tiny_lm):
    from unlearnkit.io import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "run.json", {"a": 1})
        tiny_lm.save(tmp_path / "model")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "run.json") == 0o644
    assert mode(tmp_path / "model") == 0o755
    assert all(mode(p) == 0o644 for p in (tmp_path / "model").iterdir())


@pytest.mark.parametrize("instruction, says", [("Never mention {secret}.", "unknown placeholder"),
                                               ("Never {targets", "not a valid template")])
def test_prompting_instruction_is_checked_when_the_method_is_built(instruction, says):
    from unlearnkit.errors import ConfigError
    from unlearnkit.methods.registry import build_method

    with pytest.raises(ConfigError, match=says):
        build_method("prompting", {"instruction": instruction})
    assert build_method("prompting", {"instruction": "Keep {targets} secret; {{braces}} are fine."})


def test_a_huge_field_is_refused_at_load_naming_the_record(tmp_path):
    from unlearnkit.data.loading import MAX_FIELD_CHARS, load_split

    rows = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "x" * (MAX_FIELD_CHARS + 1)}]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"forget.jsonl.*2.*'answer'.*characters"):
        load_split(tmp_path, "forget")


def test_scoring_beyond_the_context_is_a_clear_error(tiny_lm):
    limit = tiny_lm.context_length
    assert limit and limit > 0
    with pytest.raises(DataError, match="beyond the model's context"):
        tiny_lm.score(["q", "q"], ["short", "word " * (limit + 10)])


@pytest.mark.parametrize("case, needle", [("corrupt", "corrupt or truncated"), ("mismatch", "does not match"),
                                          ("no_tokenizer", "tokenizer")])
def test_damaged_model_directories_are_one_clear_error(tmp_path, case, needle):
    import shutil

    from unlearnkit.models.loading import load_model
    from unlearnkit.models.tiny import load_tiny

    good = tmp_path / "good"
    load_tiny().save(good)
    bad = tmp_path / case
    shutil.copytree(good, bad)
    if case == "corrupt":
        weights = bad / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif case == "mismatch":
        config = json.loads((bad / "config.json").read_text())
        config["hidden_size"] *= 2
        (bad / "config.json").write_text(json.dumps(config))
    else:
        for p in bad.glob("tokenizer*"):
            p.unlink()
    with pytest.raises(ModelLoadError, match=needle) as err:
        load_model(bad)
    assert str(bad) in str(err.value)


def test_eval_out_that_is_a_directory_fails_before_evaluating(tmp_path):
    out = tmp_path / "already-a-dir"
    out.mkdir()
    result = CliRunner().invoke(app, ["eval", "--model", "tiny", "--out", str(out)])
    assert result.exit_code == 2
    assert "is a directory" in result.output and "give a file name" in result.output


def test_full_disk_during_a_checkpoint_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    import torch

    from unlearnkit.errors import OutputError
    from unlearnkit.training.checkpoint import save_checkpoint

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 177664 vs 177616")

    monkeypatch.setattr(torch, "save", full_disk)
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([param])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(OutputError, match="disk is full.*free space"):
        save_checkpoint(tmp_path, 1, "fp", [("w", param)], opt, sched)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint")]


def test_write_failure_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import errno

    from unlearnkit import io
    from unlearnkit.errors import OutputError

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io, "respect_umask", no_space)
    with pytest.raises(OutputError, match=r"result.json: the disk is full"):
        io.write_json_atomic(tmp_path / "result.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["unlearn", "--method", "grad_ascent", "--max-steps", "1", "--out", "{out}/run"],
    ["unlearn", "--method", "prompting", "--out", "{out}/guard"],
    ["eval", "--no-generate", "--eval-limit", "2", "--out", "{out}/eval.json"],
])
def test_a_read_only_output_place_is_refused_before_the_work(tmp_path, tiny_data_dir, monkeypatch, command):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    args = [a.format(out=tmp_path / "ro") for a in command] + ["--model", "tiny", "--data", str(tiny_data_dir)]
    result = runner.invoke(app, args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, text
    assert str(tmp_path / "ro") in text and "the file system is read-only; choose a writable location" in text


def test_ctrl_c_during_unlearn_says_how_to_resume(tmp_path, tiny_data_dir, monkeypatch):
    from unlearnkit.workflows import unlearn as workflow

    out = tmp_path / "run"

    def interrupted_after_a_checkpoint(*args, **kwargs):
        (out / "checkpoint").mkdir(parents=True)
        (out / "checkpoint" / "state.json").write_text(json.dumps({"step": 75, "fingerprint": "x"}))
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "unlearn", interrupted_after_a_checkpoint)
    result = runner.invoke(app, ["unlearn", "--method", "grad_ascent", "--model", "tiny", "--data",
                                 str(tiny_data_dir), "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 130, text
    assert f"checkpoint at step 75 is kept in {out / 'checkpoint'}" in text
    assert "run the same command again to resume" in text
