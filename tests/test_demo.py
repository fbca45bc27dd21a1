"""The demo end to end on the tiny model: every method's row, the report, and the cache on a second run."""

import json

from rich.console import Console

from unlearnkit.evaluation.tofu import EvalConfig
from unlearnkit.methods.registry import build_method
from unlearnkit.training.config import TrainConfig
from unlearnkit.workflows.demo import DEMO_METHOD_LR, DEMO_METHOD_OPTIONS, DEMO_METHODS, DemoConfig, run_demo


def _config(methods):
    return DemoConfig(n_people=4, n_forget=1, n_holdout=1, facts_per_person=2, n_general=2, methods=methods,
                      unlearn=TrainConfig(lr=1e-4, max_steps=1, batch_size=2, warmup_ratio=0.0),
                      finetune=TrainConfig(lr=1e-3, max_steps=2, batch_size=2, warmup_ratio=0.0),
                      eval=EvalConfig(max_new_tokens=2, batch_size=8, gen_batch_size=8))


def test_demo_methods_include_blur_and_grin():
    assert {"blur", "grin"} <= set(DEMO_METHODS)


def test_demo_on_the_tiny_model_then_from_cache(tmp_path):
    console = Console(file=open(tmp_path / "log.txt", "w"))
    cfg = _config(("grad_ascent", "blur", "grin"))
    first = run_demo(tmp_path / "a", "tiny", cfg, console=console)
    names = [r["method"] for r in first["rows"]]
    assert names == ["target (before)", "retain (gold)", "grad_ascent", "blur", "grin"]
    assert first["rows"][0]["seconds"] is not None  # fine-tuned this time
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(saved["results"]) == {"target", "retain", "grad_ascent", "blur", "grin"}
    assert saved["runs"]["grin"]["train"]["lr"] == DEMO_METHOD_LR["grin"]  # per-method learning rate
    assert saved["runs"]["grad_ascent"]["train"]["lr"] == DEMO_METHOD_LR["grad_ascent"]
    assert DEMO_METHOD_OPTIONS["grin"] and saved["runs"]["grin"]["options"]["skip_embeddings"] is True
    assert saved["runs"]["grin"]["options"]["skip_embeddings"] != build_method("grin").describe()["options"][
        "skip_embeddings"]  # the demo's option, not the method's default
    page = (tmp_path / "a" / "report.html").read_text()
    assert "Where the GRIN mask fell: grin" in page
    second = run_demo(tmp_path / "b", "tiny", _config(("grad_ascent",)), console=console)
    assert second["rows"][0]["seconds"] is None  # the target came from the cache
    assert second["results"]["target"] == first["results"]["target"]
