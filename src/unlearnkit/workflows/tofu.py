"""The TOFU benchmark, end to end: which method works, on real data, under a declared protocol.

1. TOFU from a local path (``data/tofu_benchmark.py``): the forget split's authors plus the retain authors
   (``authors`` layout, sized for a CPU) or the whole of TOFU (``whole``);
2. the target and retain models, fine-tuned once and cached (``workflows/tofu_models.py``);
3. per method, a small sweep of settings (``SWEEP``), each run scored on the **selection suite**: the whole
   forget and holdout sets plus an evenly spread subset of the retain and general splits;
4. per method, the setting chosen by ``workflows/selection.py`` (best forget quality keeping >= 95 % of the
   target's model utility on the same suite) is evaluated again on the **final suite** (every record);
5. JSON, Markdown and the HTML report, with answers side by side for a handful of questions.

Every finished run and evaluation is reused on the next call (same configuration, same weights), so an
interrupted benchmark continues where it stopped; the time of each phase is printed and saved.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console

from unlearnkit.environment import environment
from unlearnkit.errors import ConfigError
from unlearnkit.io import check_writable, read_json, write_json_atomic, write_text_atomic
from unlearnkit.methods.registry import build_method
from unlearnkit.models.loading import load_model
from unlearnkit.reports.table import comparison_row, markdown_table, print_table
from unlearnkit.training.config import TrainConfig
from unlearnkit.workflows.evaluate import cached_evaluate
from unlearnkit.workflows.selection import RULE, pick_best
from unlearnkit.workflows.tofu_models import TofuModels, TofuSetup, evaluate_references, prepare_tofu_models
from unlearnkit.workflows.unlearn import RUN_FILE, unlearn

METHODS = ("grad_ascent", "grad_diff", "npo", "simnpo", "rmu", "blur", "grin", "prompting", "eco", "alu")
# The sweep starts from the published settings (docs/methods.md: lr 1e-5 for the full-weight methods on Llama) and
# adds larger steps, which a 135M model and a 40-example forget set need. RMU trains three down-projections
# and GRIN 1 % of the weights: they need larger steps for the same effect. The inference-time methods calibrate
# themselves (ECO's σ search, ALU's critic threshold); ECO also tries which tokens it corrupts.
# RMU with a fixed c = 6.5 barely moves SmolLM2, whose middle-layer activations are far larger than 6.5:
# Adaptive RMU scales c to each example's activation norm (β = 5), on the answer tokens only.
RMU_OPTIONS = {"adaptive_scale": "5", "forget_positions": "answer"}
SWEEP: dict[str, tuple[dict, ...]] = {
    "grad_ascent": ({"lr": 1e-5}, {"lr": 3e-5}),
    "grad_diff": ({"lr": 1e-5}, {"lr": 3e-5}),
    # NPO also at the retain weight BLUR's γ = 0.1 amounts to when the gradients barely conflict (α = 1/γ)
    "npo": ({"lr": 1e-5}, {"lr": 3e-5}, {"lr": 5e-5}, {"lr": 5e-5, "options": {"alpha": "10"}}),
    "simnpo": ({"lr": 1e-5}, {"lr": 3e-5}),
    # BLUR equals NPO when the two gradients barely conflict (measured cos(g_r, g_f) within ±0.13 and
    # ‖g_f‖ ≈ 30·‖g_r‖ at these rates); a smaller γ gives the retain gradient a real share of the step.
    "blur": ({"lr": 1e-5}, {"lr": 3e-5}, {"lr": 5e-5}, {"lr": 5e-5, "options": {"gamma": "0.1"}}),
    "rmu": ({"lr": 2e-4, "options": RMU_OPTIONS}, {"lr": 1e-3, "options": RMU_OPTIONS},
            {"lr": 5e-3, "options": RMU_OPTIONS}),
    "grin": ({"lr": 3e-4, "options": {"skip_embeddings": "true"}},
             {"lr": 1e-3, "options": {"skip_embeddings": "true"}}),
    "prompting": ({},),
    # ECO corrupts the names in a flagged prompt (the paper's entity setting) or every prompt token but the last:
    # TOFU questions that describe their author without the name keep their meaning under the first.
    "eco": ({}, {"options": {"token_selection": "all"}}),
    "alu": ({},),
}
UNLEARN = TrainConfig(lr=1e-5, epochs=3, batch_size=4, warmup_ratio=0.0, weight_decay=0.01)
SUMMARY_KEYS = ("forget_quality", "model_utility", "forget_rouge", "forget_keyword_accuracy", "forget_truth_ratio",
                "forget_prob", "privleak")


@dataclass
class TofuBenchConfig:
    setup: TofuSetup
    methods: tuple[str, ...] = METHODS
    sweep: dict[str, tuple[dict, ...]] = field(default_factory=lambda: dict(SWEEP))
    unlearn: TrainConfig = field(default_factory=lambda: UNLEARN)
    floor: float = 0.95  # share of the target's model utility a chosen setting must keep
    evidence: int = 4  # questions per split shown side by side in the report
    attacks: tuple[str, ...] = ()  # run on the target and every chosen model after the final suite
    attack_max_new_tokens: int = 64


def _label(cand: dict) -> str:
    parts = [f"lr{cand['lr']:g}"] if "lr" in cand else []
    parts += [f"ep{cand['epochs']:g}"] if "epochs" in cand else []
    parts += [f"{k}={v}" for k, v in sorted((cand.get("options") or {}).items())]
    return "_".join(parts) or "default"


def check_config(cfg: TofuBenchConfig) -> None:
    """Unknown methods, bad options and methods without a sweep fail before anything is trained."""
    if not cfg.methods:
        raise ConfigError("no methods to run: name at least one (e.g. --methods npo,blur)")
    for name in cfg.methods:
        if name not in cfg.sweep or not cfg.sweep[name]:
            raise ConfigError(f"method '{name}' has no sweep settings: add it to the sweep, or leave it out")
        for cand in cfg.sweep[name]:
            build_method(name, cand.get("options"))
    if not 0 < cfg.floor <= 1:
        raise ConfigError(f"the utility floor must lie in (0, 1] (got {cfg.floor})")
    if cfg.attacks:
        from unlearnkit.attacks import get_attack_class

        for name in cfg.attacks:
            get_attack_class(name)  # a typo fails now, not after hours of training


def _run(name: str, cand: dict, models: TofuModels, cfg: TofuBenchConfig, run_dir: Path, console: Console):
    """One method at one setting: reuse a finished run with the same configuration, else unlearn."""
    method = build_method(name, cand.get("options"))
    train = replace(cfg.unlearn, **{k: cand[k] for k in ("lr", "epochs") if k in cand}).validate()
    record_path = run_dir / RUN_FILE
    if record_path.is_file():
        record = read_json(record_path)
        same_train = record.get("train") == json.loads(json.dumps(method.describe_training(train)))
        same_options = record.get("options") == json.loads(json.dumps(method.describe().get("options")))
        saved = run_dir / method.saves_into
        if same_train and same_options and saved.exists():
            console.print(f"[dim]{name} {_label(cand)}: finished run reused ({run_dir})[/dim]")
            return load_model(saved), record
    console.print(f"[bold]unlearn[/bold] {name} {_label(cand)}")
    return unlearn(models.target, models.bench.task, method, train, run_dir, model_spec=str(models.target_dir))


def _summary(result: dict) -> dict:
    return {k: result["summary"].get(k) for k in (*SUMMARY_KEYS, "seconds")}


def sweep_method(name: str, models: TofuModels, cfg: TofuBenchConfig, work: Path, console: Console) -> dict:
    """Every setting of the method's sweep on the selection suite, and the one the rule chooses."""
    runs = []
    t0 = time.perf_counter()
    for cand in cfg.sweep[name]:
        run_dir = work / name / _label(cand)
        model, record = _run(name, cand, models, cfg, run_dir, console)
        result = cached_evaluate(model, models.select_task, run_dir / "eval_select.json", cfg.setup.eval,
                                 reference=models.evals["retain_select"])
        runs.append({"setting": _label(cand), **cand, **_summary(result), "unlearn_seconds": record.get("seconds"),
                     "steps": record.get("steps"), "run_dir": str(run_dir)})
        del model
        gc.collect()
    best = pick_best(runs, models.evals["target_select"]["summary"].get("model_utility") or 0.0, cfg.floor)
    rec = {"method": name, "chosen": best, "runs": runs, "sweep_seconds": time.perf_counter() - t0}
    if not best["keeps_utility"]:
        lrs = sorted({r["lr"] for r in runs if "lr" in r})
        fix = (f"try smaller steps, e.g. --lr {name}={','.join(f'{lr / 3:.1g}' for lr in lrs)}, or fewer --epochs"
               if lrs else "its setting cannot be swept here: compare it at the utility it keeps")
        rec["warning"] = (f"no setting of {name} kept {cfg.floor:.0%} of the target's model utility on the "
                          f"selection suite; the most useful run ({best['setting']}) is reported, flagged: {fix}")
        console.print(f"[yellow]warning:[/yellow] {rec['warning']}")
    return rec


def evaluate_choice(rec: dict, models: TofuModels, cfg: TofuBenchConfig) -> dict:
    """The chosen run on the final suite (cached in its run directory)."""
    run_dir = Path(rec["chosen"]["run_dir"])
    model = load_model(run_dir)  # a run directory: the edited model or the guard
    result = cached_evaluate(model, models.final_task, run_dir / "eval_final.json", cfg.setup.eval,
                             reference=models.evals["retain_final"])
    del model
    gc.collect()
    return result


def run_benchmark_attacks(cfg: TofuBenchConfig, models: TofuModels, records: dict, out_dir: Path,
                          console: Console) -> dict[str, dict]:
    """Every attack on the target and each chosen model (forget questions of the evaluation split, the methods'
    retain set as benign data); cached per model in ``out_dir/attacks/<name>.json``."""
    from unlearnkit.attacks import run_attacks

    task = models.bench.task
    key = {"attacks": list(cfg.attacks), "max_new_tokens": cfg.attack_max_new_tokens}
    out = {}
    for name in ("target", *records):
        path = out_dir / "attacks" / f"{name}.json"
        if path.is_file():
            cached = read_json(path)
            if cached.get("key") == key and cached.get("run") == (records[name]["chosen"]["run_dir"]
                                                                  if name in records else "target"):
                out[name] = cached
                continue
        if name == "target":
            model, run = models.target, "target"
        else:
            run = records[name]["chosen"]["run_dir"]
            model = load_model(run)
        console.print(f"[bold]attacks[/bold] {name}: {', '.join(cfg.attacks)}")
        t0 = time.perf_counter()
        result = run_attacks(model, task.forget_eval, list(cfg.attacks), task.retain, seed=cfg.unlearn.seed,
                             max_new_tokens=cfg.attack_max_new_tokens, method=name,
                             work_dir=str(models.cache / "attack_work"))
        result.update({"key": key, "run": run, "seconds": time.perf_counter() - t0})
        write_json_atomic(path, result)
        out[name] = result
        if name != "target":
            del model
            gc.collect()
    return out


def print_most_robust(attacks: dict[str, dict], console: Console) -> None:
    """Per attack: the method that leaks least, its leak and recovery ratio, and the longest time it took."""
    from unlearnkit.attacks.recovery import most_robust

    per_method = {name: result.get("attacks", {}) for name, result in attacks.items()}
    console.print("[bold]most robust method per attack[/bold] (leak rate, recovery ratio vs the target)")
    for row in most_robust(per_method):
        ratio = "n/a" if row["recovery_ratio"] is None else f"{row['recovery_ratio']:.2f}"
        leak = "n/a" if row["leak_rate"] is None else f"{row['leak_rate']:.3f}"
        secs = "" if row["max_seconds"] is None else f", up to {row['max_seconds']:.0f} s per model"
        console.print(f"  {row['attack']:<18} {row['method'] or 'none ran':<12} leak {leak}  recovery {ratio}{secs}")


def _row(name: str, rec: dict | None, summary: dict, floor: float) -> dict:
    if rec is None:
        return comparison_row(name, summary)
    chosen = rec["chosen"]
    note = "" if chosen["keeps_utility"] else f" (<{floor:.0%} utility)"
    return comparison_row(f"{name} [{chosen['setting']}]{note}", summary, chosen.get("unlearn_seconds"))


def run_tofu_benchmark(cfg: TofuBenchConfig, out_dir: str | Path = "runs/tofu", console: Console | None = None
                       ) -> dict:
    """Sweeps first (every method, selection suite), then the final suite for the references and each choice;
    the results files are rewritten after every method, marked ``partial`` until the end."""
    console = console or Console()
    check_config(cfg)
    out_dir = check_writable(Path(out_dir), "output directory", is_dir=True)
    t_start = time.perf_counter()
    models = prepare_tofu_models(cfg.setup, console)
    phases = models.seconds
    records: dict[str, dict] = {}
    work = models.cache / "runs"
    state = {"stage": "selection", "finals": {}}
    for name in cfg.methods:
        records[name] = sweep_method(name, models, cfg, work, console)
        phases[f"{name}_sweep"] = records[name]["sweep_seconds"]
        _write(out_dir, cfg, models, records, state, t_start, partial=True)
    evaluate_references(models, cfg.setup, "final")
    state = {"stage": "final", "finals": {"target": models.evals["target_final"],
                                          "retain": models.evals["retain_final"]}}
    for name in cfg.methods:
        t0 = time.perf_counter()
        state["finals"][name] = evaluate_choice(records[name], models, cfg)
        phases[f"{name}_final_eval"] = time.perf_counter() - t0
        _write(out_dir, cfg, models, records, state, t_start, partial=name != cfg.methods[-1])
    if cfg.attacks:
        state["attacks"] = run_benchmark_attacks(cfg, models, records, out_dir, console)
        phases["attacks"] = sum(r.get("seconds", 0.0) for r in state["attacks"].values())
        print_most_robust(state["attacks"], console)
    summary = _write(out_dir, cfg, models, records, state, t_start, partial=False)
    print_table(summary["rows"], title=f"TOFU {cfg.setup.forget} ({cfg.setup.layout} layout), final suite",
                console=console)
    for phase, s in phases.items():
        console.print(f"  {phase:<28} {s:8.1f} s")
    console.print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'report.html'} "
                  f"({summary['seconds']:.0f} s in all)")
    return summary


def _write(out_dir: Path, cfg: TofuBenchConfig, models: TofuModels, records: dict, state: dict, t_start: float,
           partial: bool) -> dict:
    """results.json / results.md / report.html, rewritten atomically after every method (never half a file).

    While only the sweeps are done (``stage: selection``) the table holds each choice on the selection suite;
    afterwards it holds the final suite."""
    from unlearnkit.reports.evidence import build_evidence, evidence_markdown
    from unlearnkit.reports.html import robust_markdown, write_report

    stage = state["stage"]
    if stage == "final":
        results = {k: v["summary"] for k, v in state["finals"].items()}
        evidence = build_evidence(state["finals"], cfg.evidence)
    else:
        results = {"target": models.evals["target_select"]["summary"],
                   "retain": models.evals["retain_select"]["summary"],
                   **{k: {key: rec["chosen"].get(key) for key in SUMMARY_KEYS} for k, rec in records.items()}}
        evidence = {"kind": "evidence", "splits": {}}
    rows = [_row(name, records.get(name), summary, cfg.floor) for name, summary in results.items()]
    summary = {
        "kind": "tofu_benchmark", "partial": partial, "stage": stage,
        "benchmark": models.bench.describe(),
        "setup": json.loads(json.dumps(asdict(cfg.setup), default=str)),
        "unlearn": asdict(cfg.unlearn), "selection": RULE.format(floor=cfg.floor),
        "rows": rows, "methods": records, "results": results,
        "select_reference": {k: models.evals[k]["summary"] for k in ("target_select", "retain_select")},
        "phases_seconds": dict(models.seconds), "seconds": time.perf_counter() - t_start,
        "environment": environment(),
    }
    write_json_atomic(out_dir / "results.json", summary)
    for name, result in state["finals"].items():
        write_json_atomic(out_dir / "evals" / f"{name}.json", result)
    sel, fin = models.select_task, models.final_task
    suites = (f"selection suite: forget {len(sel.forget_eval)}, retain {len(sel.retain_eval)}, general "
              f"{sum(map(len, sel.general_evals.values()))}; final suite: forget {len(fin.forget_eval)}, retain "
              f"{len(fin.retain_eval)}, general {sum(map(len, fin.general_evals.values()))}")
    heading = "final suite" if stage == "final" else "selection suite (final evaluations not run yet)"
    md = (f"# TOFU {cfg.setup.forget}: {'partial ' if partial else ''}results, {heading}\n\n"
          f"Layout: {models.bench.layout}; {suites}.\n\nSelection: {summary['selection']}.\n\n"
          + markdown_table(rows) + "\n"
          + "".join(f"* {rec['warning']}\n" for rec in records.values() if rec.get("warning"))
          + evidence_markdown(evidence)
          + ("\n" + robust_markdown(list(state["attacks"].values())) if state.get("attacks") else "")
          + f"\nTotal wall time: {summary['seconds']:.0f} s.\n")
    write_text_atomic(out_dir / "results.md", md)
    write_report([out_dir / "results.json", evidence, *state.get("attacks", {}).values()], out_dir / "report.html",
                 None,
                 title=f"unlearnkit: TOFU {cfg.setup.forget}")
    return summary
