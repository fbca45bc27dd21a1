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

import contextlib
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
from unlearnkit.workflows.jobs import JobPool, check_jobs
from unlearnkit.workflows.selection import RULE, pick_best
from unlearnkit.workflows.tofu_attacks import attack_summary, print_most_robust, run_benchmark_attacks
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
    attack_options: dict[str, dict] = field(default_factory=dict)  # over tofu_attacks.ATTACK_OPTIONS
    attack_batch_size: int | None = None  # decoder slots per generation call (None: the evaluation's)
    jobs: int | None = None  # worker processes for fine-tunes, sweep runs and evaluations (None: one per core)
    threads: int = 1  # torch threads per job: the figures in docs/ were made with 1


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
    check_jobs(cfg.jobs, cfg.threads)
    if not 0 < cfg.floor <= 1:
        raise ConfigError(f"the utility floor must lie in (0, 1] (got {cfg.floor})")
    if cfg.attacks:
        from unlearnkit.attacks import get_attack_class

        for name in cfg.attacks:
            get_attack_class(name)  # a typo fails now, not after hours of training
    if cfg.attack_options:
        from unlearnkit.attacks import build_attack
        from unlearnkit.workflows.tofu_attacks import attack_options

        for name, opts in attack_options(cfg.attack_options).items():
            build_attack(name, **opts)  # an unknown attack or option fails now too


def options_match(recorded: dict | None, current: dict | None, added: dict | None = None) -> bool:
    """Whether a run's recorded options are the ones asked for now. Runs recorded before options could be
    none wrote "unset" as a negative number (RMU's and BLUR's ``layer`` -1, ECO's ``sigma_target`` -1.0):
    such a value matches none, so those finished runs are still reused. ``added``: options the method gained
    after runs were recorded, with the value that reproduces them (``Options.ADDED``); a record without one
    matches that value only."""
    recorded, current = dict(recorded or {}), dict(current or {})
    for key, value in (added or {}).items():
        recorded.setdefault(key, value)
    for key, value in current.items():
        old = recorded.get(key)
        if value is None and isinstance(old, (int, float)) and not isinstance(old, bool) and old < 0:
            recorded[key] = None
    return recorded == current


def _run(name: str, cand: dict, models: TofuModels, cfg: TofuBenchConfig, run_dir: Path, console: Console):
    """One method at one setting: reuse a finished run with the same configuration, else unlearn."""
    method = build_method(name, cand.get("options"))
    train = replace(cfg.unlearn, **{k: cand[k] for k in ("lr", "epochs") if k in cand}).validate()
    record_path = run_dir / RUN_FILE
    if record_path.is_file():
        record = read_json(record_path)
        same_train = record.get("train") == json.loads(json.dumps(method.describe_training(train)))
        same_options = options_match(record.get("options"), json.loads(json.dumps(method.describe().get("options"))),
                                     getattr(type(method.options), "ADDED", None))
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


def _row(name: str, rec: dict | None, summary: dict, floor: float) -> dict:
    if rec is None:
        return comparison_row(name, summary)
    chosen = rec["chosen"]
    note = "" if chosen["keeps_utility"] else f" (<{floor:.0%} utility)"
    return comparison_row(f"{name} [{chosen['setting']}]{note}", summary, chosen.get("unlearn_seconds"))


def run_tofu_benchmark(cfg: TofuBenchConfig, out_dir: str | Path = "runs/tofu", console: Console | None = None
                       ) -> dict:
    """Sweeps first (every method, selection suite), then the final suite for the references and each choice;
    the results files are rewritten after every method, marked ``partial`` until the end.

    With ``cfg.jobs`` > 1 the fine-tunes, sweep runs and evaluations run first in that many worker processes
    (``workflows/tofu_jobs.py``), which fill the caches this function then reads; each phase's time is then
    its jobs' own seconds, and ``wall_*`` the stages' wall time."""
    console = console or Console()
    check_config(cfg)
    out_dir = check_writable(Path(out_dir), "output directory", is_dir=True)
    t_start = time.perf_counter()
    jobs = check_jobs(cfg.jobs, cfg.threads)
    with JobPool(jobs, cfg.threads) if jobs > 1 else contextlib.nullcontext() as pool:
        if pool is not None:
            from unlearnkit.workflows import tofu_jobs

            console.print(f"[bold]{jobs} jobs[/bold] side by side, {cfg.threads} thread(s) each")
            job_seconds = tofu_jobs.prepare_models(cfg.setup, pool, console)
        models = prepare_tofu_models(cfg.setup, console)
        phases = models.seconds
        records: dict[str, dict] = {}
        work = models.cache / "runs"
        if pool is not None:
            phases.update(job_seconds, wall_models=time.perf_counter() - t_start)
            t0 = time.perf_counter()
            quiet = Console(quiet=True)
            job_seconds = tofu_jobs.schedule(cfg, models, pool,
                                             lambda name: sweep_method(name, models, cfg, work, quiet), console)
            phases["wall_sweeps_and_finals"] = time.perf_counter() - t0
    jobs_seconds = dict(job_seconds) if jobs > 1 else {}
    state = {"stage": "selection", "finals": {}}
    for name in cfg.methods:
        records[name] = sweep_method(name, models, cfg, work, console)
        phases[f"{name}_sweep"] = jobs_seconds.get(f"{name}_sweep", records[name]["sweep_seconds"])
        _write(out_dir, cfg, models, records, state, t_start, partial=True)
    evaluate_references(models, cfg.setup, "final")
    phases["eval_references_final"] = jobs_seconds.get("eval_references_final", phases["eval_references_final"])
    state = {"stage": "final", "finals": {"target": models.evals["target_final"],
                                          "retain": models.evals["retain_final"]}}
    for name in cfg.methods:
        t0 = time.perf_counter()
        state["finals"][name] = evaluate_choice(records[name], models, cfg)
        phases[f"{name}_final_eval"] = jobs_seconds.get(f"{name}_final_eval", time.perf_counter() - t0)
        _write(out_dir, cfg, models, records, state, t_start, partial=name != cfg.methods[-1])
    if cfg.attacks:
        t0 = time.perf_counter()  # this call's wall time: about 0 when every model's attacks were cached
        state["attacks"] = run_benchmark_attacks(cfg, models, records, out_dir, console)
        phases["attacks"] = time.perf_counter() - t0
        print_most_robust(state["attacks"], console)
    summary = _write(out_dir, cfg, models, records, state, t_start, partial=False)
    print_table(summary["rows"], title=f"TOFU {cfg.setup.forget} ({cfg.setup.layout} layout), final suite",
                console=console)
    for phase, s in phases.items():
        console.print(f"  {phase:<28} {s:8.1f} s")
    console.print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}, {out_dir / 'report.html'} "
                  f"({summary['seconds']:.0f} s in all)")
    return summary


def _recovery_note(summary: dict) -> str:
    """Where the most robust method still gets more than a fifth of the target's leak back (or none)."""
    rows = summary["attacks"]["most_robust"]
    over = [f"{r['attack']} ({r['method']}, {r['recovery_ratio']:.2f})" for r in rows
            if r["recovery_ratio"] is not None and r["recovery_ratio"] > 0.2]
    undefined = [r["attack"] for r in rows if r["recovery_ratio"] is None]
    text = ("\nRecovery ratio of the most robust method <= 0.2 under every attack it could be computed for."
            if not over else f"\nRecovery ratio of the most robust method above 0.2: {', '.join(over)}.")
    if undefined:
        text += (f" No ratio (skipped everywhere, or the target leaks nothing under it): {', '.join(undefined)}.")
    times = [f"{name} {m['seconds']:.0f} s" for name, m in summary["attacks"]["models"].items()
             if isinstance(m.get("seconds"), (int, float))]
    return text + (f"\n\nAttack suite wall time per model: {', '.join(times)}.\n" if times else "\n")


def _write(out_dir: Path, cfg: TofuBenchConfig, models: TofuModels, records: dict, state: dict, t_start: float,
           partial: bool) -> dict:
    """results.json / results.md / report.html, rewritten atomically after every method (never half a file);
    the report's figures are drawn at the last write.

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
        "jobs": {"processes": check_jobs(cfg.jobs, cfg.threads), "threads_per_job": cfg.threads},
        "environment": environment(),
    }
    if state.get("attacks"):
        summary["attacks"] = attack_summary(state["attacks"])
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
          + ("\n" + robust_markdown(list(state["attacks"].values())) + _recovery_note(summary)
             if state.get("attacks") else "")
          + f"\nTotal wall time: {summary['seconds']:.0f} s.\n")
    write_text_atomic(out_dir / "results.md", md)
    write_report([out_dir / "results.json", evidence, *state.get("attacks", {}).values()], out_dir / "report.html",
                 None, title=f"unlearnkit: TOFU {cfg.setup.forget}", with_figures=not partial)
    return summary
