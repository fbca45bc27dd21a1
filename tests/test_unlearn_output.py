"""`unlearn --out DIR` never replaces what is not an earlier run of the same method."""

import pytest

from unlearnkit.errors import ConfigError
from unlearnkit.methods.registry import build_method
from unlearnkit.training.config import TrainConfig
from unlearnkit.workflows.unlearn import unlearn

STEPS = TrainConfig(max_steps=1, batch_size=2)


def test_a_directory_with_someone_elses_model_is_refused_and_kept(tiny_lm, tiny_task, tmp_path):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.bin").write_bytes(b"precious")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty .* not an unlearnkit run"):
        unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), STEPS, out, model_spec="tiny")
    assert (out / "model" / "weights.bin").read_bytes() == b"precious"
    assert (out / "notes.txt").read_text() == "mine"


def test_a_rerun_of_the_same_method_replaces_its_run_but_another_method_is_refused(tiny_lm, tiny_task, tmp_path):
    out = tmp_path / "ga"
    unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), STEPS, out, model_spec="tiny")
    unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), STEPS, out, model_spec="tiny")  # same: fine
    with pytest.raises(ConfigError, match="holds a run of 'grad_ascent', not of 'npo'"):
        unlearn(tiny_lm, tiny_task, build_method("npo", {}), STEPS, out, model_spec="tiny")
    assert (out / "model" / "config.json").is_file()


def test_an_empty_or_missing_directory_is_used(tiny_lm, tiny_task, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new"):
        _, record = unlearn(tiny_lm, tiny_task, build_method("grad_ascent", {}), STEPS, out, model_spec="tiny")
        assert record["output"] == str(out / "model")


def test_both_families_save_through_one_save_and_load_back_from_the_run_directory(tiny_lm, tiny_task, tmp_path):
    from unlearnkit.methods.prompting import PromptingGuard, PromptingOptions
    from unlearnkit.models.loading import load_model

    for name, saved_in in (("grad_ascent", "model"), ("prompting", "")):
        out = tmp_path / name
        method = build_method(name, {})
        model, record = unlearn(tiny_lm, tiny_task, method, STEPS, out, model_spec="tiny")
        assert record["output"] == str(out / saved_in)
        assert (record["train"] is None) == (method.family == "guard")
        again = load_model(out)  # the run directory itself, for either family
        assert type(again).__name__ == type(model).__name__
    guard = PromptingGuard(tiny_lm, [], PromptingOptions())
    with pytest.raises(ConfigError, match="needs the spec of the model it wraps"):
        guard.save(tmp_path / "g")


def test_a_model_served_elsewhere_cannot_be_saved(tmp_path):
    from unlearnkit.models.remote import OpenAIChatModel

    remote = OpenAIChatModel("http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ConfigError, match="cannot be saved"):
        remote.save(tmp_path / "x")
