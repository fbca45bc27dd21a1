"""The whole attack suite on one unlearned model and on the target, timed attack by attack.

It runs exactly what ``unlearnkit tofu --attacks ...`` runs after the final suite (``workflows/tofu_attacks.py``:
the forget questions of the evaluation split, the retain set as benign data, the same budgets, decoder slots
and token limit) and prints, per attack, its seconds on each model, its budget and its leak, then the total per
model, the recovery ratios and whether the goal holds: the full suite on one method within 600 s.

    # after `unlearnkit tofu --data ../shared/data/tofu ...` has chosen each method's setting:
    python benchmarks/attack_suite.py --data ../shared/data/tofu --method npo
    python benchmarks/attack_suite.py --data ../shared/data/tofu --run-dir PATH   # any run directory
    python benchmarks/attack_suite.py ... --skip-target --attacks plain,quantize  # a part, one model

The target model is the TOFU workflow's cached one (the same data, layout and base model), or ``--target``.
Run it alone on the machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def target_dir(args) -> Path:
    from unlearnkit.data.tofu_benchmark import load_tofu_benchmark
    from unlearnkit.paths import cache_root
    from unlearnkit.workflows.finetune import records_digest
    from unlearnkit.workflows.tofu_models import TofuSetup

    if args.target:
        return Path(args.target)
    setup = TofuSetup(data=str(args.data), forget=args.forget, layout=args.layout, model=args.model)
    bench = load_tofu_benchmark(setup.data, setup.forget, setup.layout)
    key = setup.key(records_digest(bench.target_train) + records_digest(bench.retain_train))
    return cache_root() / "tofu" / key / "target" / "model"


def method_dir(args) -> tuple[str, Path]:
    if args.run_dir:
        return Path(args.run_dir).name, Path(args.run_dir)
    results = json.loads(Path(args.results).read_text())
    methods = results.get("methods", {})
    if args.method not in methods:
        sys.exit(f"{args.results} has no method '{args.method}' (it has: {', '.join(methods) or 'none'}); "
                 "pass --run-dir for any run directory")
    return args.method, Path(methods[args.method]["chosen"]["run_dir"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the TOFU copy the benchmark used")
    ap.add_argument("--forget", default="forget01")
    ap.add_argument("--layout", default="authors")
    ap.add_argument("--model", default=None, help="the base model spec the benchmark used (default: SmolLM2)")
    ap.add_argument("--method", default="npo", help="a method of --results (its chosen run is attacked)")
    ap.add_argument("--results", default="runs/tofu/results.json", help="the TOFU benchmark's results.json")
    ap.add_argument("--run-dir", default=None, help="attack this run directory instead of --method's choice")
    ap.add_argument("--target", default=None, help="the target model's directory (default: the benchmark's cache)")
    ap.add_argument("--skip-target", action="store_true", help="time the method only (no recovery ratios)")
    ap.add_argument("--attacks", default=None, help="comma list (default: every attack)")
    ap.add_argument("--attack-opt", action="append", default=[], help="ATTACK:key=value,... as for unlearnkit tofu")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs/attack_suite"))
    args = ap.parse_args(argv)

    import torch
    from rich.console import Console

    from unlearnkit.attacks import ATTACKS
    from unlearnkit.attacks.recovery import recovery_ratios
    from unlearnkit.cli import parse_attack_options
    from unlearnkit.data.tofu_benchmark import load_tofu_benchmark
    from unlearnkit.environment import environment
    from unlearnkit.evaluation.tofu import EvalConfig
    from unlearnkit.io import write_json_atomic
    from unlearnkit.models.loading import load_model
    from unlearnkit.training.config import TrainConfig
    from unlearnkit.workflows.tofu_attacks import SUITE_GOAL_SECONDS, attack_one, attack_options

    console = Console()
    names = [a.strip() for a in args.attacks.split(",")] if args.attacks else list(ATTACKS)
    options = attack_options(parse_attack_options(args.attack_opt))
    batch = EvalConfig().gen_batch_size
    task = load_tofu_benchmark(args.data, args.forget, args.layout).task
    label, run = method_dir(args)
    models = [(label, run)] + ([] if args.skip_target else [("target", target_dir(args))])
    for name, path in models:
        if not path.exists():
            sys.exit(f"{name}: {path} does not exist (run `unlearnkit tofu --data {args.data}` first, or pass "
                     f"{'--target' if name == 'target' else '--run-dir'})")
    console.print(f"forget questions: {len(task.forget_eval)}, retain (benign) records: {len(task.retain)}; "
                  f"max_new_tokens {args.max_new_tokens}, decoder slots {batch}, torch threads "
                  f"{torch.get_num_threads()}")
    results = {}
    for name, path in models:
        t0 = time.perf_counter()
        model = load_model(path)
        load_s = time.perf_counter() - t0
        console.print(f"[bold]{name}[/bold] ({path}, loaded in {load_s:.1f} s)")
        results[name] = attack_one(model, task, names, options, seed=TrainConfig().seed,
                                   max_new_tokens=args.max_new_tokens, batch_size=batch,
                                   work_dir=args.out / "work", method=name, console=console)
        del model

    ratios = recovery_ratios({n: r["attacks"] for n, r in results.items()}).get(label, {})
    console.print()
    header = f"{'attack':<18} " + " ".join(f"{n + ' s':>12}" for n in results) + f" {'leak':>7} {'ratio':>6}  budget"
    console.print(header)
    console.print("-" * len(header))
    for attack in names:
        method_res = results[label]["attacks"][attack]
        secs = " ".join(f"{results[n]['attacks'][attack]['seconds']:12.1f}" for n in results)
        leak = "skip" if method_res.get("skipped") else f"{method_res['leak_rate']:.3f}"
        ratio = ratios.get(attack)
        budget = {k: v for k, v in method_res.get("budget", {}).items() if k not in ("batch_size", "max_new_tokens")}
        note = f"  ({method_res['reason']})" if method_res.get("skipped") else ""
        console.print(f"{attack:<18} {secs} {leak:>7} {'n/a' if ratio is None else f'{ratio:.2f}':>6}  "
                      f"{json.dumps(budget) if budget else ''}{note}")
    console.print("-" * len(header))
    console.print(f"{'total':<18} " + " ".join(f"{results[n]['seconds']:12.1f}" for n in results))
    total = results[label]["seconds"]
    holds = total <= SUITE_GOAL_SECONDS
    console.print(f"\nfull suite on {label}: {total:.0f} s; goal (<= {SUITE_GOAL_SECONDS:.0f} s on one method): "
                  f"{'holds' if holds else 'does not hold'}")
    if ratios:
        over = [f"{a} ({r:.2f})" for a, r in ratios.items() if r is not None and r > 0.2]
        console.print(f"recovery ratio of {label} <= 0.2 under every attack with a ratio: "
                      + ("yes" if not over else f"no: {', '.join(over)}"))
    out = {"kind": "attack_suite", "method": label, "run_dir": str(run), "attacks": names, "options": options,
           "max_new_tokens": args.max_new_tokens, "batch_size": batch, "goal_seconds": SUITE_GOAL_SECONDS,
           "goal_holds": holds, "seconds": {n: r["seconds"] for n, r in results.items()},
           "per_attack_seconds": {n: {a: r["attacks"][a]["seconds"] for a in names} for n, r in results.items()},
           "recovery_ratios": ratios, "results": results, "environment": environment()}
    write_json_atomic(args.out / "attack_suite.json", out)
    console.print(f"written: {args.out / 'attack_suite.json'}")
    return out


if __name__ == "__main__":
    main()
