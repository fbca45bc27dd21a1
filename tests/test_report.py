"""The HTML/Markdown report renders from fixture results: embedded figures and every number."""

from __future__ import annotations

import base64
import json
import re

import pytest

from unlearnkit.reports.html import collect, fmt, write_report


def eval_result(method, fq, mu, kw, rouge):
    return {"suite": "tofu", "method": method, "model": {"name": method},
            "summary": {"forget_quality": fq, "model_utility": mu, "forget_keyword_accuracy": kw,
                        "forget_rouge": rouge, "privleak": -12.5, "seconds": 33.25},
            "per_example": {"forget": [{"question": "q", "prob": 0.987654}]}}


def attack_result(method, leaks, relearn=None):
    attacks = {}
    for name, leak in leaks.items():
        attacks[name] = {"attack": name, "skipped": False, "leak_rate": leak, "rouge_l_recall": leak / 2 + 0.0123,
                         "n": 8, "seconds": 1.5, "per_example": [{"generation": "x", "rouge": 0.4242}]}
    attacks["lang_de"] = {"attack": "lang_de", "skipped": True, "reason": "no translation backend configured",
                          "leak_rate": None, "rouge_l_recall": None, "seconds": 0.001}
    if relearn:
        attacks["relearning"] = {"attack": "relearning", "skipped": False, "leak_rate": relearn[1],
                                 "rouge_l_recall": 0.3125, "n": 4, "n_train": 4, "seconds": 9.5, "steps": 10,
                                 "before": {"keyword_accuracy": relearn[0], "answer_prob": 0.1875},
                                 "after": {"keyword_accuracy": relearn[1], "answer_prob": 0.5625}}
    return {"kind": "attacks", "method": method, "model": {"name": method}, "attacks": attacks}


def scale_result(method, sequential=False):
    stages = []
    for i, n in enumerate((1, 10, 100)):
        stages.append({"stage": i, "n_targets": n, "n_new_targets": n, "unlearn_seconds": 2.5 * (i + 1) + 0.125,
                       "latency_s": 0.0625 * (i + 1), "tokens_per_query": 100.0 + 37 * i, "calls_per_query": 1.0 + i,
                       "latency_s_forget": 0.1875 * (i + 1), "latency_s_retain": 0.03125 * (i + 1),
                       "tokens_per_query_forget": 300.0 + 11 * i, "tokens_per_query_retain": 50.0 + 3 * i,
                       "forget_leak_rate": 0.0 + 0.0625 * i, "forget_rouge": 0.1 + 0.05 * i,
                       "earlier_leak_rate": None if i == 0 else 0.03125 * i,
                       "retain_keyword_accuracy": 0.875 - 0.0625 * i, "retain_rouge": 0.7, "over_refusal": 0.015625 * i,
                       "per_example": {"forget": [{"rouge": 0.777777}]}})
    return {"kind": "scale", "method": method, "sequential": sequential, "stages": stages}


@pytest.fixture()
def fixture_results():
    return [
        eval_result("target", 1.7e-21, 0.6021, 0.875, 0.9132),
        eval_result("npo", 0.0231, 0.4617, 0.125, 0.2874),
        eval_result("alu", 0.8123, 0.5899, 0.0, 0.0456),
        attack_result("npo", {"plain": 0.125, "many_shot": 0.375, "target_masking": 0.25}, relearn=(0.125, 0.625)),
        attack_result("alu", {"plain": 0.0, "many_shot": 0.0625, "target_masking": 0.1875, "prompt_injection": 0.5}),
        scale_result("npo"),
        scale_result("alu", sequential=True),
    ]


def numbers(obj, skip=("per_example",)):
    """Every number in a result, skipping the per-example values."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip:
                yield from numbers(v, skip)
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v, skip)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def test_fmt():
    assert fmt(1.7e-21) == "1.700e-21"
    assert fmt(0.4617) == "0.4617"
    assert fmt(12) == "12" and fmt(None) == "–" and fmt(0.0) == "0"
    assert fmt(1234567.0) == "1.235e+06"


def test_report_has_embedded_figures_and_every_number(tmp_path, fixture_results):
    out = write_report(fixture_results, tmp_path / "report.html", tmp_path / "report.md")
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3 and out["figures"] == 3
    for b64 in images:
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real plot, not an empty canvas
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    missing = [fmt(v) for r in fixture_results for v in numbers(r) if fmt(v) not in page]
    assert not missing, f"numbers not in the report: {missing}"
    assert "0.9877" not in page  # per-example values stay in the JSON
    assert "no translation backend configured" in page
    for name in ("target", "npo", "alu", "alu (sequential)", "many_shot", "relearning"):
        assert name in page
    md = (tmp_path / "report.md").read_text()
    assert "| npo |" in md and "0.4617" in md and "1.700e-21" in md
    assert "many_shot" in md and "report.html" in md
    assert "relearning (0.625)" in md  # npo's worst attack


def test_report_from_paths_and_bundles(tmp_path, fixture_results):
    paths = []
    for i, r in enumerate(fixture_results[:3]):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"kind": "bundle", "results": fixture_results[3:]}))
    data = collect([*paths, bundle])
    assert list(data.methods) == ["target", "npo", "alu"]
    assert set(data.attacks) == {"npo", "alu"} and set(data.scale) == {"npo", "alu (sequential)"}
    out = write_report([*map(str, paths), str(bundle)], tmp_path / "r.html")
    assert out["figures"] == 3 and out["markdown"] is None
    # a partial report during a long run: every table, the figures only at the end
    partial = write_report([*map(str, paths), str(bundle)], tmp_path / "p.html", with_figures=False)
    page = (tmp_path / "p.html").read_text()
    assert partial["figures"] == 0 and "figures are drawn when the run ends" in page
    assert page.count("<table") == (tmp_path / "r.html").read_text().count("<table") > 0


def test_report_with_partial_results_and_bad_input(tmp_path, fixture_results):
    out = write_report([fixture_results[5]], tmp_path / "scale.html", tmp_path / "scale.md")
    assert out["figures"] == 1  # only the scale figure has data
    assert "Forget quality vs model utility" not in (tmp_path / "scale.html").read_text()
    with pytest.raises(ValueError, match="not a result"):
        write_report([{"foo": 1}], tmp_path / "bad.html")
    from unlearnkit.errors import DataError

    with pytest.raises(DataError, match="no result file"):
        write_report([tmp_path / "nope.json"], tmp_path / "bad.html")
    (tmp_path / "notjson.json").write_text("{oops")
    with pytest.raises(DataError, match="not a JSON result"):
        write_report([tmp_path / "notjson.json"], tmp_path / "bad.html")


def test_demo_results_json_is_understood(tmp_path):
    demo = {"rows": [{"method": "npo", "forget_quality": 0.5}],
            "results": {"target": {"forget_quality": 1e-5, "model_utility": 0.5},
                        "npo": {"forget_quality": 0.5, "model_utility": 0.4}}}
    data = collect([demo])
    assert data.methods["npo"]["model_utility"] == 0.4 and "target" in data.methods


def test_coinciding_points_share_one_label():
    from unlearnkit.reports.plots import _label_groups

    groups = _label_groups({"npo": (0.365, 0.66), "blur": (0.3651, 0.66), "grad_diff": (0.299, 0.98),
                            "grin": (0.294, 0.087)}, du=0.004, dlog=0.08)
    assert [names for names, _ in groups] == [["npo", "blur"], ["grad_diff"], ["grin"]]
