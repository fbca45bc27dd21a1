"""Weight-editing methods head to head: GradAscent, GradDiff, NPO, SimNPO, RMU, BLUR, GRIN.

Same data, target model, step budget and batch for every method (the demo's:
``DemoConfig``), a learning-rate sweep of 3 values per method, and per method the
best run by: *highest forget quality among the runs that keep at least 90 % of
the target model's utility* (when no run does, the run with the highest utility,
flagged). Prints forget quality, model utility, forget ROUGE, keyword accuracy,
privleak, wall time and time per step, and writes everything as JSON.

    python benchmarks/weight_methods.py --out runs/weight_methods.json          # embedded SmolLM2
    python benchmarks/weight_methods.py --quick --model tiny --out /tmp/wm.json  # smoke run (seconds)

The target and retain models (and their evaluations) are the demo's, from the
same cache: ``unlearnkit demo`` and this script train them once between them.
Finished runs are reused (``<work>/<method>/lr<lr>/run.json`` with the same
configuration), so an interrupted benchmark continues where it stopped.
Wall time includes a method's one-off setup (NPO reference log-probs, GRIN's
mask); time per step is wall time / steps.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from unlearnkit.io import read_json, write_json_atomic
from unlearnkit.methods.registry import build_method
from unlearnkit.models.loading import load_model
from unlearnkit.workflows.demo import DemoConfig, prepare_demo_models
from unlearnkit.workflows.evaluate import cached_evaluate
from unlearnkit.workflows.selection import pick_best
from unlearnkit.workflows.unlearn import unlearn

METHODS = ("grad_ascent", "grad_diff", "npo", "simnpo", "rmu", "blur", "grin")
# Three learning rates per method around the demo's 2e-5 (SmolLM2-135M, full weights). RMU trains three
# down-projections and GRIN 1 % of the weights: they need larger steps for the same effect.
LR_SWEEP = {
    "grad_ascent": (1e-5, 2e-5, 5e-5),
    "grad_diff": (1e-5, 2e-5, 5e-5),
    "npo": (1e-5, 2e-5, 5e-5),
    "simnpo": (1e-5, 2e-5, 5e-5),
    "blur": (1e-5, 2e-5, 5e-5),
    "rmu": (5e-5, 2e-4, 1e-3),
    "grin": (1e-4, 3e-4, 1e-3),
}
KEEP_UTILITY = 0.9
METRICS = ("forget_quality", "model_utility", "forget_rouge", "forget_keyword_accuracy", "privleak")


def prepare(cfg: DemoConfig, model_spec: str | None, console: Console):
    """The demo's data, target and retain models and their evaluations (same cache as ``run_demo``)."""
    dm = prepare_demo_models(cfg, model_spec, console)
    return dm.task, dm.target, dm.target_dir, dm.target_eval, dm.retain_eval


def run_one(name, lr, train, target, target_dir, task, cfg, retain_eval, run_dir: Path, console: Console,
            options: dict[str, str] | None = None) -> dict:
    method = build_method(name, options)
    train = replace(train, lr=lr)
    run_file = run_dir / "run.json"
    model = None
    if run_file.is_file() and (run_dir / "model").is_dir():
        record = read_json(run_file)
        if record.get("train") == json.loads(json.dumps(asdict(train))) and record.get("options") == \
                json.loads(json.dumps(method.describe()["options"])):
            console.print(f"[dim]{name} lr {lr:g}: finished run reused ({run_dir})[/dim]")
            model = load_model(run_dir / "model")
    if model is None:
        console.print(f"[bold]unlearn[/bold] {name} (lr {lr:g}, {train.max_steps or '-'} steps, batch {train.batch_size})")
        model, record = unlearn(target, task, method, train, run_dir, model_spec=str(target_dir))
    result = cached_evaluate(model, task, run_dir / "eval.json", cfg.eval, reference=retain_eval)
    del model
    gc.collect()
    s = result["summary"]
    return {"method": name, "lr": lr, "options": dict(options or {}), **{k: s.get(k) for k in METRICS}, "seconds": record["seconds"],
            "steps": record["steps"], "seconds_per_step": record["seconds_per_step"], "run_dir": str(run_dir)}


def _fmt(value, spec):
    return "–" if value is None else format(value, spec)


def print_table(rows: list[dict], target: dict, console: Console, title: str) -> None:
    table = Table(title=title)
    for header in ("method", "lr", "forget quality ↑", "model utility ↑", "forget ROUGE ↓", "keyword acc ↓",
                   "privleak →0", "wall (s)", "s/step"):
        table.add_column(header, justify="left" if header == "method" else "right")
    table.add_row("target (before)", "", _fmt(target.get("forget_quality"), ".2e"),
                  _fmt(target.get("model_utility"), ".3f"), _fmt(target.get("forget_rouge"), ".3f"),
                  _fmt(target.get("forget_keyword_accuracy"), ".3f"), _fmt(target.get("privleak"), ".1f"), "", "")
    for r in rows:
        name = r["method"] + ("" if r["keeps_utility"] else " (<90% utility)")
        table.add_row(name, f"{r['lr']:g}", _fmt(r["forget_quality"], ".2e"), _fmt(r["model_utility"], ".3f"),
                      _fmt(r["forget_rouge"], ".3f"), _fmt(r["forget_keyword_accuracy"], ".3f"),
                      _fmt(r["privleak"], ".1f"), _fmt(r["seconds"], ".1f"), _fmt(r["seconds_per_step"], ".2f"))
    console.print(table)


def _parse_lrs(items: list[str]) -> dict[str, tuple[float, ...]]:
    out = {}
    for item in items:
        name, _, values = item.partition("=")
        out[name.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="base model: smollm2 (embedded), tiny (smoke runs), a path")
    ap.add_argument("--out", type=Path, default=Path("runs/weight_methods.json"), help="JSON results file")
    ap.add_argument("--work", type=Path, default=None, help="run directories (default: next to --out)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: the demo's epochs over D_f)")
    ap.add_argument("--batch-size", type=int, default=None, help="batch size (default: the demo's)")
    ap.add_argument("--lr", action="append", default=[], metavar="METHOD=LR1,LR2,LR3",
                    help="replace a method's learning-rate sweep (repeatable)")
    ap.add_argument("--opt", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="a method option (repeatable), e.g. grin:skip_embeddings=true")
    ap.add_argument("--tag", default="", help="suffix of the run directories (keeps variants apart)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="generation length in the evaluation")
    ap.add_argument("--quick", action="store_true", help="smoke run: one lr per method, 3 steps, short answers")
    args = ap.parse_args(argv)

    console = Console()
    cfg = DemoConfig()
    train = cfg.unlearn
    if args.batch_size:
        train = replace(train, batch_size=args.batch_size)
    steps = args.steps or (3 if args.quick else None)
    if args.quick:
        cfg = replace(cfg, eval=replace(cfg.eval, max_new_tokens=16))
    if args.max_new_tokens:
        cfg = replace(cfg, eval=replace(cfg.eval, max_new_tokens=args.max_new_tokens))
    sweep = {**LR_SWEEP, **_parse_lrs(args.lr)}
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options: dict[str, dict[str, str]] = {}
    for item in args.opt:
        name, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        options.setdefault(name.strip(), {})[key.strip()] = value.strip()
    for m in methods:
        build_method(m, options.get(m))  # unknown names and bad options fail before anything is trained
    work = args.work or args.out.with_suffix("")
    model_spec = None if args.model in {"smollm2", "default", "embedded"} else args.model

    t0 = time.perf_counter()
    task, target, target_dir, target_eval, retain_eval = prepare(cfg, model_spec, console)
    train = replace(train, max_steps=steps or train.total_steps(len(task.forget))).validate()
    target_summary = {k: target_eval["summary"].get(k) for k in METRICS}
    all_runs, best = [], []
    for name in methods:
        lrs = sweep[name]
        if args.quick:
            lrs = (lrs[len(lrs) // 2],)
        runs = [run_one(name, lr, train, target, target_dir, task, cfg, retain_eval,
                        work / name / f"lr{lr:g}{args.tag}", console, options.get(name)) for lr in lrs]
        all_runs += runs
        best.append(pick_best(runs, target_summary["model_utility"] or 0.0, KEEP_UTILITY))
    title = (f"weight-editing methods: built-in benchmark, {target.name.split('/')[-1]}, "
             f"{train.max_steps} steps × batch {train.batch_size}, best of {'1' if args.quick else '3'} lr")
    print_table(best, target_summary, console, title)
    summary = {"model": args.model, "steps": train.max_steps, "batch_size": train.batch_size,
               "selection": f"max forget_quality s.t. model_utility >= {KEEP_UTILITY} x target; ties: lower forget "
                            "keyword accuracy, lower forget ROUGE, higher utility",
               "config": json.loads(json.dumps(asdict(cfg), default=str)), "train": asdict(train),
               "target": target_summary, "retain": {k: retain_eval["summary"].get(k) for k in METRICS},
               "best": best, "runs": all_runs, "seconds": time.perf_counter() - t0}
    write_json_atomic(args.out, summary)
    console.print(f"results: {args.out} ({summary['seconds']:.0f} s in all)")
    return summary


if __name__ == "__main__":
    main()
