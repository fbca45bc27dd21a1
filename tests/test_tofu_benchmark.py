"""The TOFU benchmark: data layout, bad input, the selection rule, and the whole workflow on the tiny model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from unlearnkit.data.tofu_benchmark import author_name, eval_subset, evenly_spaced, load_tofu_benchmark
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.workflows.selection import pick_best

TEMPLATES = ["Where was {n} born?", "What genre does {n} write in?", "Who are the parents of {n}?",
             "What is a famous book by {n}?", "Has {n} won any awards?"]


def _author(i: int, offset: int = 0) -> list[dict]:
    name = f"Quill{i} Marrow{i}"
    return [{"question": TEMPLATES[k % 5].replace("?", f" (part {k})?").format(n=name),
             "answer": f"{name} answer {k}: born in Town{i + offset}, genre {k}."} for k in range(20)]


def _perturbed(rows: list[dict]) -> list[dict]:
    return [{**r, "paraphrased_answer": r["answer"] + " Indeed.",
             "perturbed_answer": [r["answer"].replace("born", "raised"), r["answer"] + " Not."],
             "paraphrased_question": "Tell me: " + r["question"]} for r in rows]


def write_mini_tofu(root: Path, n_authors: int = 6, drop: str | None = None) -> Path:
    """A TOFU-shaped export: blocks of 20 per author, forget01 = the last two authors."""
    root.mkdir(parents=True, exist_ok=True)
    full = [r for i in range(n_authors) for r in _author(i)]
    general = [{"question": f"What is fact {k}?", "answer": f"Fact {k}", "perturbed_answer": ["Other", "None"]}
               for k in range(6)]
    splits = {
        "full": full, "forget01": full[-40:], "retain99": full[:-40],
        "forget01_perturbed": _perturbed(full[-40:]),
        "holdout01": [r for i in (90, 91) for r in _author(i, 5)],
        "retain_perturbed": _perturbed(full[:20] + full[20:40:2]),
        "real_authors_perturbed": general, "world_facts_perturbed": general,
    }
    for name, rows in splits.items():
        if name == drop:
            continue
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_authors_layout_learns_forget_plus_retain_authors(tmp_path):
    b = load_tofu_benchmark(write_mini_tofu(tmp_path / "tofu"))
    assert b.forget_authors == ["Quill4 Marrow4", "Quill5 Marrow5"]
    assert b.retain_authors == ["Quill0 Marrow0", "Quill1 Marrow1"]
    assert len(b.retain_train) == 40 and len(b.target_train) == 80
    assert {r.subject for r in b.task.forget} == {"Quill4 Marrow4", "Quill5 Marrow5"}
    assert {r.subject for r in b.task.retain} == {"Quill0 Marrow0", "Quill1 Marrow1"}
    assert b.task.retain == b.retain_train  # the methods' retain set is what the retain model learned
    assert b.task.forget_eval[0].subject == "Quill4 Marrow4"
    assert not {r.question for r in b.task.forget} & {r.question for r in b.retain_train}


def test_whole_layout_is_the_published_protocol(tmp_path):
    b = load_tofu_benchmark(write_mini_tofu(tmp_path / "tofu"), layout="whole")
    assert len(b.target_train) == 120 and len(b.retain_train) == 80
    assert b.task.splits.retain == "retain99"


@pytest.mark.parametrize("drop, needle", [("full", "full"), ("forget01_perturbed", "forget01_perturbed"),
                                          ("retain_perturbed", "retain_perturbed")])
def test_missing_tofu_files_name_the_file(tmp_path, drop, needle):
    with pytest.raises(DataError, match=needle):
        load_tofu_benchmark(write_mini_tofu(tmp_path / "tofu", drop=drop))


def test_copy_without_perturbed_fields_says_which_field(tmp_path):
    root = write_mini_tofu(tmp_path / "tofu")
    rows = [json.loads(line) for line in (root / "forget01_perturbed.jsonl").read_text().splitlines()]
    (root / "forget01_perturbed.jsonl").write_text("".join(json.dumps({"question": r["question"],
                                                                       "answer": r["answer"]}) + "\n" for r in rows))
    with pytest.raises(DataError, match="paraphrased_answer"):
        load_tofu_benchmark(root)


def test_forget_split_not_in_the_data_or_not_tofu(tmp_path):
    root = write_mini_tofu(tmp_path / "tofu")
    with pytest.raises(DataError, match="forget05"):
        load_tofu_benchmark(root, forget="forget05")
    with pytest.raises(DataError, match="unknown TOFU forget split"):
        load_tofu_benchmark(root, forget="forget02")
    with pytest.raises(DataError, match="layout"):
        load_tofu_benchmark(root, layout="half")


def test_full_must_be_author_blocks(tmp_path):
    root = write_mini_tofu(tmp_path / "tofu")
    lines = (root / "full.jsonl").read_text().splitlines()
    (root / "full.jsonl").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="multiple of 20"):
        load_tofu_benchmark(root)


def test_author_name_is_the_name_most_questions_spell():
    from unlearnkit.data.records import QARecord

    block = [QARecord(q, "a") for q in ["What is the full name of the author born in Kuwait City?",
                                         "What gender is author Basil Mahfouz Al-Kuwaiti?",
                                         "In which city was Basil Mahfouz Al-Kuwaiti born?",
                                         "What did Basil Mahfouz Al-Kuwaiti's parents do?"]]
    assert author_name(block) == "Basil Mahfouz Al-Kuwaiti"


def test_subsets_spread_over_the_split(tmp_path):
    assert evenly_spaced(list(range(10)), 3) == [0, 3, 6]
    assert evenly_spaced(list(range(4)), None) == [0, 1, 2, 3]
    assert evenly_spaced(list(range(4)), 9) == [0, 1, 2, 3]
    b = load_tofu_benchmark(write_mini_tofu(tmp_path / "tofu"))
    sub = eval_subset(b.task, 5, 2)
    assert len(sub.retain_eval) == 5 and all(len(v) == 2 for v in sub.general_evals.values())
    assert sub.forget_eval == b.task.forget_eval and sub.holdout == b.task.holdout
    assert {r.subject for r in sub.retain_eval} == {"Quill0 Marrow0", "Quill1 Marrow1"}


def test_selection_rule():
    runs = [{"setting": "a", "forget_quality": 0.9, "model_utility": 0.5},
            {"setting": "b", "forget_quality": 0.4, "model_utility": 0.59},
            {"setting": "c", "forget_quality": 0.4, "model_utility": 0.6, "forget_keyword_accuracy": 0.1},
            {"setting": "d", "forget_quality": 0.4, "model_utility": 0.6, "forget_keyword_accuracy": 0.3}]
    best = pick_best(runs, target_utility=0.6)
    assert best["setting"] == "c" and best["keeps_utility"]  # a is below 95 %; c beats b, d on the tie-break
    assert pick_best(runs, target_utility=0.6, floor=0.8)["setting"] == "a"
    none = pick_best(runs[:1], target_utility=1.0)
    assert none["setting"] == "a" and none["keeps_utility"] is False


def _tiny_cfg(data: Path, methods=("grad_ascent", "prompting")):
    from unlearnkit.evaluation.tofu import EvalConfig
    from unlearnkit.training.config import TrainConfig
    from unlearnkit.workflows.tofu import TofuBenchConfig
    from unlearnkit.workflows.tofu_models import TofuSetup

    setup = TofuSetup(data=str(data), model="tiny", finetune=TrainConfig(lr=1e-3, max_steps=2, batch_size=8),
                      eval=EvalConfig(max_new_tokens=4), select_retain=3, select_general=2,
                      final_retain=6, final_general=3)
    sweep = {"grad_ascent": ({"lr": 1e-4}, {"lr": 1e-3}), "prompting": ({},)}
    return TofuBenchConfig(setup=setup, methods=methods, sweep=sweep,
                           unlearn=TrainConfig(lr=1e-4, max_steps=2, batch_size=4, warmup_ratio=0.0), evidence=2,
                           jobs=1)


def test_whole_benchmark_on_the_tiny_model(tmp_path):
    from unlearnkit.workflows.tofu import run_tofu_benchmark

    data = write_mini_tofu(tmp_path / "tofu")
    out = tmp_path / "out"
    cfg = replace(_tiny_cfg(data), attacks=("plain", "quantize"), attack_max_new_tokens=4)
    summary = run_tofu_benchmark(cfg, out)
    assert not summary["partial"]
    assert [r["method"].split(" ")[0] for r in summary["rows"]] == ["target", "retain", "grad_ascent", "prompting"]
    ga = summary["methods"]["grad_ascent"]
    assert [r["setting"] for r in ga["runs"]] == ["lr0.0001", "lr0.001"]
    assert ga["chosen"]["setting"] in {"lr0.0001", "lr0.001"}
    assert summary["results"]["grad_ascent"]["forget_quality"] is not None
    for name in ("results.json", "results.md", "report.html", "evals/grad_ascent.json"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert "Answers side by side" in page and "Quill4 Marrow4" in page
    assert "Answers side by side" in (out / "results.md").read_text()
    attacked = json.loads((out / "attacks" / "grad_ascent.json").read_text())
    assert set(attacked["attacks"]) == {"plain", "quantize"} and (out / "attacks" / "target.json").is_file()
    assert "Recovery ratio" in page
    assert "data:image/png;base64," in page and "figures are drawn when the run ends" not in page  # the last write
    # A second call reuses every model, run and evaluation: nothing is trained again.
    again = run_tofu_benchmark(cfg, out)
    assert again["phases_seconds"]["finetune_target"] == 0.0 and again["phases_seconds"]["finetune_retain"] == 0.0
    assert again["results"] == summary["results"]  # the cached evaluations, wall time included


def test_benchmark_is_deterministic(tmp_path, monkeypatch):
    """Two runs from scratch (separate caches): identical weights and identical metrics."""
    import torch

    from unlearnkit.models.loading import load_model
    from unlearnkit.workflows.tofu import run_tofu_benchmark

    data = write_mini_tofu(tmp_path / "tofu")
    results, weights = [], []
    for i in range(2):
        monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / f"cache{i}"))
        s = run_tofu_benchmark(_tiny_cfg(data, methods=("grad_ascent",)), tmp_path / f"out{i}")
        results.append({m: {k: v for k, v in r.items() if k != "seconds"} for m, r in s["results"].items()})
        chosen = Path(s["methods"]["grad_ascent"]["chosen"]["run_dir"]) / "model"
        weights.append({k: v.clone() for k, v in load_model(chosen).model.state_dict().items()})
    assert results[0] == results[1]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_jobs_side_by_side_give_the_numbers_of_one_process(tmp_path, monkeypatch):
    """Two worker processes (fine-tunes, sweep runs, evaluations side by side) against everything in this
    process at the same thread count, from scratch each: the same choices, weights and metrics."""
    import torch

    from unlearnkit.models.loading import load_model
    from unlearnkit.workflows.tofu import run_tofu_benchmark

    import unlearnkit.workflows.evaluate as ev

    data = write_mini_tofu(tmp_path / "tofu")
    threads = torch.get_num_threads()
    in_main = []
    real = ev.evaluate_tofu
    try:
        summaries, weights = [], []
        for jobs in (1, 2):
            # this process at another thread count than the workers: it still only reads their results
            torch.set_num_threads(jobs)
            if jobs == 2:
                monkeypatch.setattr(ev, "evaluate_tofu", lambda *a, **k: in_main.append(1) or real(*a, **k))
            monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / f"cache{jobs}"))
            cfg = replace(_tiny_cfg(data, methods=("grad_ascent", "prompting")), jobs=jobs, threads=1)
            summaries.append(run_tofu_benchmark(cfg, tmp_path / f"out{jobs}"))
            chosen = Path(summaries[-1]["methods"]["grad_ascent"]["chosen"]["run_dir"]) / "model"
            weights.append(load_model(chosen).model.state_dict())
    finally:
        torch.set_num_threads(threads)
    one, two = summaries
    assert not in_main  # every evaluation was a worker's, none done twice
    assert two["jobs"] == {"processes": 2, "threads_per_job": 1} and one["jobs"]["processes"] == 1
    assert one["results"].keys() == two["results"].keys()
    for name in one["results"]:
        assert ({k: v for k, v in one["results"][name].items() if k != "seconds"}
                == {k: v for k, v in two["results"][name].items() if k != "seconds"}), name
    assert [r["setting"] for r in one["methods"]["grad_ascent"]["runs"]] == \
        [r["setting"] for r in two["methods"]["grad_ascent"]["runs"]]
    assert one["methods"]["grad_ascent"]["chosen"]["setting"] == two["methods"]["grad_ascent"]["chosen"]["setting"]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    phases = two["phases_seconds"]
    # the jobs' own seconds, not the near-zero reads of their cached results
    assert phases["finetune_target"] > 0 and phases["finetune_retain"] > 0
    assert phases["grad_ascent_sweep"] > 0 and phases["prompting_final_eval"] > 0
    assert phases["wall_models"] > 0 and phases["wall_sweeps_and_finals"] > 0


def test_bad_configuration_fails_before_training(tmp_path):
    from unlearnkit.workflows.tofu import check_config

    cfg = _tiny_cfg(tmp_path)
    with pytest.raises(ConfigError, match="no sweep"):
        check_config(replace(cfg, methods=("npo",)))
    with pytest.raises(ConfigError, match="unknown method|Unknown method"):
        check_config(replace(cfg, methods=("nope",), sweep={"nope": ({},)}))
    with pytest.raises(ConfigError, match="floor"):
        check_config(replace(cfg, floor=1.5))
    with pytest.raises(ConfigError, match="unknown attack"):
        check_config(replace(cfg, attacks=("plain", "quantise")))
    with pytest.raises(ConfigError, match="--jobs must be at least 1"):
        check_config(replace(cfg, jobs=0))
    with pytest.raises(ConfigError, match="--threads must be at least 1"):
        check_config(replace(cfg, threads=0))


def test_lr_option_parsing():
    from unlearnkit.cli import parse_lr_sweep
    from unlearnkit.workflows.tofu import SWEEP

    out = parse_lr_sweep(["grin=1e-4,2e-4"], SWEEP)
    assert out["grin"] == ({"lr": 1e-4, "options": {"skip_embeddings": "true"}},
                           {"lr": 2e-4, "options": {"skip_embeddings": "true"}})
    with pytest.raises(ConfigError, match="METHOD=LR1"):
        parse_lr_sweep(["npo"], SWEEP)


def test_setting_option_adds_one_candidate_with_options_over_the_sweeps_own():
    from unlearnkit.cli import add_settings
    from unlearnkit.workflows.tofu import SWEEP, TofuBenchConfig, check_config
    from unlearnkit.workflows.tofu_models import TofuSetup

    out = add_settings(["blur:lr=1e-4,gamma=0.1", "rmu:lr=5e-4,epochs=2"], SWEEP)
    assert out["blur"][:-1] == SWEEP["blur"] and out["blur"][-1] == {"lr": 1e-4, "options": {"gamma": "0.1"}}
    assert out["rmu"][-1] == {"lr": 5e-4, "epochs": 2.0, "options": dict(SWEEP["rmu"][0]["options"])}
    assert len(out["blur"]) == len(SWEEP["blur"]) + 1  # the module's sweep is not changed
    # what one candidate varies (BLUR's γ) is not carried into a new setting; what all share (RMU's) is
    assert add_settings(["blur:lr=2e-5"], SWEEP)["blur"][-1] == {"lr": 2e-5}
    from unlearnkit.cli import parse_lr_sweep

    assert parse_lr_sweep(["blur=2e-5"], SWEEP)["blur"] == ({"lr": 2e-5},)
    check_config(TofuBenchConfig(setup=TofuSetup(data="x"), methods=("blur",), sweep=out))
    with pytest.raises(ConfigError, match="unknown option|gammma"):  # a typo fails before anything trains
        check_config(TofuBenchConfig(setup=TofuSetup(data="x"), methods=("blur",),
                                     sweep=add_settings(["blur:gammma=0.1"], SWEEP)))
    for bad in ("blur", "blur:", "blur:lr", "blur:lr=-1", "blur:lr=abc", ":lr=1"):
        with pytest.raises(ConfigError, match="--setting"):
            add_settings([bad], SWEEP)


def test_a_sweep_with_no_run_above_the_floor_warns_and_names_the_fix(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    import unlearnkit.workflows.tofu as tofu

    models = SimpleNamespace(select_task=None, evals={"retain_select": {},
                                                      "target_select": {"summary": {"model_utility": 0.5}}})
    monkeypatch.setattr(tofu, "_run", lambda *a, **k: (object(), {"seconds": 1.0, "steps": 3}))
    utility = iter([0.1, 0.2])
    monkeypatch.setattr(tofu, "cached_evaluate",
                        lambda *a, **k: {"summary": {"forget_quality": 0.9, "model_utility": next(utility)}})
    cfg = replace(_tiny_cfg(tmp_path), sweep={"npo": ({"lr": 3e-5}, {"lr": 9e-5})})
    rec = tofu.sweep_method("npo", models, cfg, tmp_path, Console(file=None, quiet=True))
    assert rec["chosen"]["lr"] == 9e-5 and rec["chosen"]["keeps_utility"] is False  # the most useful run
    assert "kept 95%" in rec["warning"] and "--lr npo=1e-05,3e-05" in rec["warning"]


def test_every_attack_on_the_tiny_benchmark_result_or_reason_ratio_table_and_cache(tmp_path, monkeypatch):
    """``--attacks`` with every attack name: each gives a leak rate or a skip reason on the target, a weight
    method and a guard, with its budget and seconds; results.json holds the recovery ratios and the most-robust
    table, results.md the table, report.html the table and the heat map; a second run reuses every model's
    attack results."""
    import unlearnkit.attacks as attacks_pkg
    from unlearnkit.attacks import ATTACKS
    from unlearnkit.workflows.tofu import run_tofu_benchmark

    data = write_mini_tofu(tmp_path / "tofu")
    out = tmp_path / "out"
    budget = {"many_shot": {"max_shots": 4}, "best_of_n": {"n": 2}, "relearning": {"steps": 2, "lr": 1e-3},
              "relearn_disjoint": {"steps": 2, "lr": 1e-3}, "relearn_benign": {"steps": 2, "lr": 1e-3},
              "soft_prompt": {"steps": 3}}
    cfg = replace(_tiny_cfg(data), attacks=tuple(ATTACKS), attack_max_new_tokens=4, attack_options=budget)
    summary = run_tofu_benchmark(cfg, out)
    assert set(summary["attacks"]["models"]) == {"target", "grad_ascent", "prompting"}
    for model, per in summary["attacks"]["models"].items():
        assert set(per["attacks"]) == set(ATTACKS), model
        assert per["seconds"] > 0
        for name, res in per["attacks"].items():
            assert res["skipped"] in (True, False), (model, name)
            if res["skipped"]:
                assert res["reason"], (model, name)
            else:
                assert isinstance(res["leak_rate"], float), (model, name)
            assert res["seconds"] >= 0 and res["budget"]["max_new_tokens"] == 4 and res["budget"]["batch_size"] == 64
    target, ga, guard = (summary["attacks"]["models"][m]["attacks"] for m in ("target", "grad_ascent", "prompting"))
    assert ga["best_of_n"]["budget"]["n_samples"] == 2 and ga["many_shot"]["budget"]["max_shots"] == 4
    assert ga["relearning"]["budget"]["steps"] == 2 and ga["soft_prompt"]["budget"]["steps"] == 3
    assert ga["quantize"]["budget"]["bits"] == [4, 8] and ga["few_shot"]["budget"]["k"] == 4
    assert ga["relearn_disjoint"]["same_run_as"] == "relearning"
    assert not ga["relearning"]["skipped"] and not guard["relearning"]["skipped"]  # a guard: the weights beneath it
    assert guard["prompt_injection"]["skipped"] is False and ga["prompt_injection"]["skipped"]
    assert not guard["quantize"]["skipped"] and not guard["soft_prompt"]["skipped"]  # through the model under it
    assert target["lang_es"]["skipped"] and "translat" in target["lang_es"]["reason"]  # TOFU: no built-in one
    assert not target["paraphrase"]["skipped"] and not target["many_shot"]["skipped"]
    ratios = summary["attacks"]["recovery_ratios"]
    assert set(ratios) == {"grad_ascent", "prompting"} and set(ratios["grad_ascent"]) == set(ATTACKS)
    for name in ATTACKS:
        t, g = target[name], ga[name]
        if not t["skipped"] and not g["skipped"] and t["leak_rate"]:
            assert ratios["grad_ascent"][name] == pytest.approx(g["leak_rate"] / t["leak_rate"])
        else:
            assert ratios["grad_ascent"][name] is None
    table = {r["attack"]: r for r in summary["attacks"]["most_robust"]}
    assert set(table) == set(ATTACKS)
    assert table["prompt_injection"]["method"] == "prompting"
    assert table["prompt_injection"]["skipped_for"] == ["grad_ascent"]  # weights: no target list to extract
    assert table["lang_de"]["method"] is None
    saved = json.loads((out / "results.json").read_text())
    assert saved["attacks"]["most_robust"] == json.loads(json.dumps(summary["attacks"]["most_robust"]))
    md = (out / "results.md").read_text()
    assert "Most robust method per attack" in md and "| prompt_injection | prompting |" in md
    assert "Recovery ratio of the most robust method" in md and "Attack suite wall time per model" in md
    page = (out / "report.html").read_text()
    assert "Most robust method per attack" in page and "Recovery ratio: method × attack" in page
    first = {m: json.loads((out / "attacks" / f"{m}.json").read_text()) for m in ("target", "grad_ascent", "prompting")}

    def no_attacks(*a, **k):
        raise AssertionError("the attacks ran again instead of being reused")

    monkeypatch.setattr(attacks_pkg, "run_attacks", no_attacks)
    again = run_tofu_benchmark(cfg, out)
    assert again["attacks"] == json.loads(json.dumps(summary["attacks"]))
    assert again["phases_seconds"]["attacks"] < 5
    for m, result in first.items():
        assert json.loads((out / "attacks" / f"{m}.json").read_text()) == result
    # a different budget is a different measurement: the cache is not used
    with pytest.raises(AssertionError, match="ran again"):
        run_tofu_benchmark(replace(cfg, attack_options={**budget, "best_of_n": {"n": 3}}), out)


def test_tofu_command_passes_attacks_and_their_budgets(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import unlearnkit.workflows.tofu as tofu
    from unlearnkit.attacks import ATTACKS
    from unlearnkit.cli import app, parse_attack_options

    seen = {}
    monkeypatch.setattr(tofu, "run_tofu_benchmark", lambda cfg, out, console=None: seen.update(cfg=cfg) or {})
    res = CliRunner().invoke(app, ["tofu", "--data", str(tmp_path), "--attacks", ",".join(ATTACKS),
                                   "--attack-opt", "many_shot:max_shots=64", "--attack-opt", "quantize:bits=[4,8]",
                                   "--attack-opt", "best_of_n:n=16,temperature=0.7"])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert cfg.attacks == tuple(ATTACKS)
    assert cfg.attack_options == {"many_shot": {"max_shots": 64}, "quantize": {"bits": [4, 8]},
                                  "best_of_n": {"n": 16, "temperature": 0.7}}
    with pytest.raises(ConfigError, match="--attack-opt"):
        parse_attack_options(["many_shot"])
    from unlearnkit.workflows.tofu import check_config

    with pytest.raises(ConfigError, match="best_of_n"):
        check_config(replace(_tiny_cfg(tmp_path), attacks=("best_of_n",), attack_options={"best_of_n": {"m": 3}}))


def test_attack_suite_benchmark_times_each_attack_on_a_chosen_run_and_the_target(tmp_path, capsys):
    import importlib.util

    from unlearnkit.workflows.tofu import run_tofu_benchmark

    data = write_mini_tofu(tmp_path / "tofu")
    summary = run_tofu_benchmark(_tiny_cfg(data, methods=("grad_ascent",)), tmp_path / "out")
    target = Path(summary["methods"]["grad_ascent"]["chosen"]["run_dir"]).parents[2] / "target" / "model"
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "attack_suite.py"
    spec = importlib.util.spec_from_file_location("attack_suite", path)
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    out = suite.main(["--data", str(data), "--model", "tiny", "--results", str(tmp_path / "out" / "results.json"),
                      "--method", "grad_ascent", "--target", str(target), "--attacks", "plain,quantize,relearning",
                      "--attack-opt", "relearning:steps=1,lr=1e-3", "--max-new-tokens", "4",
                      "--out", str(tmp_path / "suite")])
    printed = capsys.readouterr().out
    assert set(out["per_attack_seconds"]) == {"grad_ascent", "target"}
    assert set(out["per_attack_seconds"]["grad_ascent"]) == {"plain", "quantize", "relearning"}
    assert out["results"]["grad_ascent"]["attacks"]["relearning"]["budget"]["steps"] == 1
    assert out["options"]["many_shot"] == {"max_shots": 16}  # the workflow's budget, unless overridden
    assert "full suite on grad_ascent:" in printed and "goal (<= 600 s on one method):" in printed
    assert ("holds" in printed) and out["goal_holds"] == (out["seconds"]["grad_ascent"] <= 600)
    assert json.loads((tmp_path / "suite" / "attack_suite.json").read_text())["method"] == "grad_ascent"
    with pytest.raises(SystemExit, match="no method 'npo'"):
        suite.main(["--data", str(data), "--results", str(tmp_path / "out" / "results.json"), "--method", "npo"])


def test_runs_recorded_with_negative_unset_sentinels_are_still_reused():
    from unlearnkit.workflows.tofu import options_match

    current = {"layer": None, "gamma": 0.1, "sigma_target": None}
    assert options_match({"layer": -1, "gamma": 0.1, "sigma_target": -1.0}, current)
    assert options_match(current, current)
    assert not options_match({"layer": 3, "gamma": 0.1, "sigma_target": None}, current)  # a real layer differs
    assert not options_match({"layer": -1, "gamma": 1.0, "sigma_target": None}, current)
    assert not options_match({"layer": None, "gamma": 0.1}, current)  # an option missing from the record
    assert not options_match({"gamma": -0.5}, {"gamma": 0.5})  # only a none now can match an old sentinel
    # an option added later matches a record without it only at the value that reproduces the recorded run
    added = {"neighbour_budget": None}
    assert options_match({"gamma": 0.5}, {"gamma": 0.5, "neighbour_budget": None}, added)
    assert not options_match({"gamma": 0.5}, {"gamma": 0.5, "neighbour_budget": 0.02}, added)
    assert not options_match({"gamma": 0.5}, {"gamma": 0.5, "neighbour_budget": None})  # not declared as added
    from unlearnkit.methods.registry import build_method

    for name in ("eco", "alu"):  # the published defaults are the recorded runs' behaviour
        opts = build_method(name).options
        assert all(getattr(opts, k) == v for k, v in type(opts).ADDED.items()), name


def test_attack_stage_resumes_at_the_next_attack_and_remeasures_only_what_a_revision_changes(tmp_path, monkeypatch):
    """Each attack's result is kept as it finishes: a stage stopped in the middle of a model's suite reuses the
    attacks already done. Raising an attack's revision for guards measures that attack again on the guard only; an
    assembled file written before revisions existed counts as revision 1."""
    from unlearnkit.attacks.format_shift import FormatShift
    from unlearnkit.attacks.soft_prompt import SoftPrompt
    from unlearnkit.attacks.templates import RolePlay
    from unlearnkit.workflows.tofu import run_tofu_benchmark

    data = write_mini_tofu(tmp_path / "tofu")
    out = tmp_path / "out"
    cfg = replace(_tiny_cfg(data), attacks=("role_play", "format_shift", "soft_prompt"), attack_max_new_tokens=4,
                  attack_options={"soft_prompt": {"steps": 2}})
    ran: list[tuple[str, str]] = []
    real = {cls: cls.run for cls in (RolePlay, FormatShift, SoftPrompt)}

    def counting(cls):
        def run(self, model, records, ctx):
            ran.append((cls.name, model.name))
            return real[cls](self, model, records, ctx)
        return run

    for cls in real:
        monkeypatch.setattr(cls, "run", counting(cls))

    def stop(self, model, records, ctx):
        raise KeyboardInterrupt  # the machine stops in the middle of the target's suite

    monkeypatch.setattr(FormatShift, "run", stop)
    with pytest.raises(KeyboardInterrupt):
        run_tofu_benchmark(cfg, out)
    assert ran == [("role_play", ran[0][1])] and (out / "attacks" / "target" / "role_play.json").is_file()
    assert not (out / "attacks" / "target.json").exists()

    monkeypatch.setattr(FormatShift, "run", counting(FormatShift))
    ran.clear()
    first = run_tofu_benchmark(cfg, out)
    assert [a for a, _ in ran].count("role_play") == 2  # grad_ascent and prompting, not the target again
    assert [a for a, _ in ran].count("format_shift") == 3 and [a for a, _ in ran].count("soft_prompt") == 3

    ran.clear()
    monkeypatch.setattr(SoftPrompt, "revisions", {"guard": 99})
    again = run_tofu_benchmark(cfg, out)
    assert len(ran) == 1 and ran[0][0] == "soft_prompt" and ran[0][1].startswith("prompting")
    assert again["attacks"]["models"]["target"] == first["attacks"]["models"]["target"]

    # an assembled file from before revisions (its key has none) is revision 1: reused where that is current
    monkeypatch.setattr(SoftPrompt, "revisions", {})
    for name in ("target", "grad_ascent", "prompting"):
        path = out / "attacks" / f"{name}.json"
        rec = json.loads(path.read_text())
        rec["key"].pop("revisions")
        path.write_text(json.dumps(rec))
        for piece in (out / "attacks" / name).glob("*.json"):
            piece.unlink()
    ran.clear()
    run_tofu_benchmark(cfg, out)
    assert ran == []  # every attack is at revision 1 for every family: all reused
    monkeypatch.setattr(SoftPrompt, "revisions", {"guard": 2})
    run_tofu_benchmark(cfg, out)
    assert len(ran) == 1 and ran[0][0] == "soft_prompt" and ran[0][1].startswith("prompting")


def test_attack_results_follow_the_run_not_its_directory(tmp_path):
    """A run directory trained again (other options) does not keep the attacks measured on its earlier model;
    results written before runs were digested count only when written after the run was trained."""
    import os

    from unlearnkit.workflows.tofu_attacks import cached_attacks, run_digest

    run = tmp_path / "runs" / "grin" / "lr0.001"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"method": "grin", "options": {"noise_by_position": False},
                                              "seconds": 400.0}))
    attack_dir = tmp_path / "attacks"
    key = {"attack": "plain", "options": {}, "seed": 0, "max_new_tokens": 4, "batch_size": 8, "revision": 1}
    (attack_dir / "grin").mkdir(parents=True)
    path = attack_dir / "grin" / "plain.json"
    record = {"key": key, "run": str(run), "model": {"method": "grin"}, "result": {"leak_rate": 0.2}}
    path.write_text(json.dumps({**record, "run_digest": run_digest(str(run))}))
    assert set(cached_attacks(attack_dir, "grin", str(run), {"plain": key})) == {"plain"}
    (run / "run.json").write_text(json.dumps({"method": "grin", "options": {"noise_by_position": True},
                                              "seconds": 410.0}))  # trained again
    assert cached_attacks(attack_dir, "grin", str(run), {"plain": key}) == {}
    path.write_text(json.dumps(record))  # an earlier version's record: no digest
    os.utime(run / "run.json", (path.stat().st_mtime - 10,) * 2)  # the run is older than the result
    assert set(cached_attacks(attack_dir, "grin", str(run), {"plain": key})) == {"plain"}
    os.utime(run / "run.json", (path.stat().st_mtime + 10,) * 2)  # trained again after it
    assert cached_attacks(attack_dir, "grin", str(run), {"plain": key}) == {}
