"""Robustness of every unlearning method: leak rate per attack, and the cost curve at scale.

On the embedded model and the built-in benchmark:

1. the demo's target model (forget + retain people) and retain model, from the demo's cache;
2. unlearn the forget people with each method in the registry (GradDiff, NPO, BLUR, GRIN, ECO, ALU —
   whichever import), evaluate it (TOFU suite: forget quality, model utility, keyword accuracy);
3. attack each unlearned model (and the target model, as the baseline): paraphrase, many-shot,
   target masking, Spanish/French/German, jailbreak templates, prompt injection (guards),
   relearning (weight methods); leak rate = keyword accuracy of the answers;
4. the scale sweep: unlearn 1, 10, 100, 1000 generated people and record forgetting, utility,
   wall time to unlearn, latency and tokens per query;
5. print the tables and write ``robustness.json`` (every number, per-example values included),
   ``report.html`` (figures + tables) and ``report.md`` into ``--out``.

    python benchmarks/robustness.py --quick                    # minutes: small data, few steps, sizes 1,10
    python benchmarks/robustness.py --quick --model tiny       # seconds: checks that everything runs
    python benchmarks/robustness.py --out runs/robustness      # the full run (hours on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

CANDIDATE_METHODS = ("grad_diff", "npo", "blur", "grin", "eco", "alu")




def available_methods(names) -> list[str]:
    from unlearnkit.methods.registry import get_method_class

    out = []
    for name in names:
        try:
            get_method_class(name)
            out.append(name)
        except Exception as exc:  # not in the registry yet, or its module fails to import
            print(f"[robustness] skipping method {name}: {exc}", file=sys.stderr)
    return out


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    from unlearnkit.reports.html import fmt

    if not rows:  # e.g. --no-attacks leaves the attack tables empty
        return
    cells = [[fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="base model spec for load_model ('tiny' to smoke-test)")
    ap.add_argument("--quick", action="store_true", help="small data, a few training steps, sizes 1,10")
    ap.add_argument("--methods", default=",".join(CANDIDATE_METHODS), help="comma list (those that import run)")
    ap.add_argument("--attacks", default=None, help="comma list of attacks (default: all)")
    ap.add_argument("--scale-sizes", default=None, help="default 1,10,100,1000 (quick: 1,10)")
    ap.add_argument("--scale-methods", default=None, help="methods for the scale sweep (default: the same)")
    ap.add_argument("--sequential", action="store_true", help="scale sweep as continual unlearning requests")
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--no-attacks", action="store_true",
                    help="skip unlearning + attacks per method; run only the scale sweep (its own --out, then "
                         "`unlearnkit report` both JSON files into one page)")
    ap.add_argument("--translator", default=None, help="model spec used to translate non-built-in questions")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/robustness"))
    args = ap.parse_args(argv)

    from unlearnkit.attacks import run_attacks
    from unlearnkit.evaluation.tofu import EvalConfig
    from unlearnkit.io import write_json_atomic
    from unlearnkit.methods.registry import build_method
    from unlearnkit.models.loading import load_model
    from unlearnkit.reports.html import write_report
    from unlearnkit.workflows.demo import DemoConfig, prepare_demo_models
    from unlearnkit.workflows.evaluate import cached_evaluate
    from unlearnkit.workflows.finetune import FINETUNE_DEFAULTS
    from unlearnkit.workflows.scale import ScaleConfig, run_builtin_scale
    from unlearnkit.workflows.unlearn import unlearn

    quick, tiny = args.quick, args.model == "tiny"
    demo = DemoConfig()
    max_new = args.max_new_tokens or (24 if quick else 48)
    data_kw = (dict(n_people=6, n_forget=2, n_holdout=2, facts_per_person=3, seed=args.seed, n_general=6) if quick else
               dict(n_people=demo.n_people, n_forget=demo.n_forget, n_holdout=demo.n_holdout,
                    facts_per_person=demo.facts_per_person, seed=args.seed, n_general=demo.n_general))
    ft_cfg = replace(FINETUNE_DEFAULTS, lr=3e-3, epochs=3) if tiny else FINETUNE_DEFAULTS
    unlearn_cfg = replace(demo.unlearn, max_steps=2) if quick else demo.unlearn
    scale_train = replace(demo.unlearn, epochs=1, max_steps=2 if quick else 20)
    relearn = {"steps": 2 if quick else 10, "lr": 1e-3 if tiny else 5e-5}
    attack_opts = {"many_shot": {"max_shots": 8 if quick else 64},
                   "relearning": relearn, "relearn_disjoint": dict(relearn), "relearn_benign": dict(relearn),
                   "prompt_injection": {"n_queries": 3 if quick else 8}}
    sizes = tuple(int(s) for s in (args.scale_sizes or ("1,10" if quick else "1,10,100,1000")).split(","))
    eval_cfg = EvalConfig(max_new_tokens=max_new)
    t_all = time.perf_counter()

    # the demo's data, target and retain models (one cache shared with the demo and the other benchmarks)
    dm = prepare_demo_models(replace(demo, **data_kw, finetune=ft_cfg, eval=eval_cfg), args.model)
    data_dir, task, target, reference = dm.data_dir, dm.task, dm.target, dm.retain_eval
    print(f"[robustness] data {data_dir}: forget {len(task.forget)}, retain {len(task.retain)}", file=sys.stderr)
    translator = load_model(args.translator) if args.translator else None
    attacks = args.attacks.split(",") if args.attacks else None
    forget = list(task.forget)
    out_dir: Path = args.out
    results: list[dict] = []

    def save_partial():  # what is done so far survives a later failure
        write_json_atomic(out_dir / "robustness.partial.json", {"kind": "bundle", "results": results})

    def attack(model, name):
        res = run_attacks(model, forget, attacks, task.retain, seed=args.seed, max_new_tokens=max_new,
                          translator=translator, options=attack_opts, method=name, work_dir=str(out_dir))
        results.append({k: v for k, v in res.items()})
        save_partial()
        return res

    methods = available_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    if not args.no_attacks:
        t0 = time.perf_counter()
        results.append({"kind": "evaluation", "method": "target", "summary": dm.target_eval["summary"]})
        attack(target, "target")
        print(f"[robustness] target: attacks in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    target_spec = str(dm.target_dir)
    for name in ([] if args.no_attacks else methods):
        t0 = time.perf_counter()
        method = build_method(name)
        model, record = unlearn(target, task, method, unlearn_cfg, out_dir / "methods" / name, model_spec=target_spec)
        ev = cached_evaluate(model, task, out_dir / "methods" / name / "eval.json", eval_cfg, reference=reference)
        results.append({"kind": "evaluation", "method": name,
                        "summary": {**ev["summary"], "unlearn_seconds": record["seconds"]}})
        attack(model, name)
        del model
        print(f"[robustness] {name}: unlearn + eval + attacks in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    if not args.no_scale:
        scale_methods = available_methods(args.scale_methods.split(",")) if args.scale_methods else methods
        # targets: the forget people the target model knows, then generated people; retain: the task's
        cfg = ScaleConfig(sizes=sizes, sequential=args.sequential, eval_forget=8 if quick else 40,
                          eval_earlier=8 if quick else 40, eval_retain=8 if quick else 40, max_new_tokens=max_new,
                          seed=args.seed)
        for name in scale_methods:
            t0 = time.perf_counter()
            res = run_builtin_scale(target, build_method(name), cfg, out_dir / "scale" / name, task=task,
                                    train=scale_train, method_name=name)
            results.append(res)
            print(f"[robustness] scale {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    bundle = {"kind": "bundle", "benchmark": "robustness", "model": args.model, "quick": quick, "data": str(data_dir),
              "seconds": time.perf_counter() - t_all, "results": results}
    write_json_atomic(out_dir / "robustness.json", bundle)
    report = write_report([bundle], out_dir / "report.html", out_dir / "report.md",
                          title=f"unlearnkit robustness: {args.model}" + (" (quick)" if quick else ""))

    attack_res = [r for r in results if r.get("kind") == "attacks"]
    names = list(dict.fromkeys(a for r in attack_res for a in r["attacks"]))
    print_table("Leak rate per attack (keyword accuracy; prompt injection: share of target names revealed)",
                ["attack", *[r["method"] for r in attack_res]],
                [[a, *[("skipped" if r["attacks"].get(a, {}).get("skipped") else r["attacks"].get(a, {}).get("leak_rate"))
                       for r in attack_res]] for a in names])
    print_table("Seconds per attack (the suite's total per model in the last row; budgets in robustness.json)",
                ["attack", *[r["method"] for r in attack_res]],
                [[a, *[r["attacks"].get(a, {}).get("seconds") for r in attack_res]] for a in names]
                + [["total", *[sum(x.get("seconds") or 0.0 for x in r["attacks"].values()) for r in attack_res]]])
    from unlearnkit.attacks.recovery import most_robust

    robust = most_robust({r["method"]: r["attacks"] for r in attack_res})
    print_table("Most robust method per attack (leak rate; recovery ratio = leak / the target's leak)",
                ["attack", "method", "leak rate", "recovery ratio", "target leak", "longest s"],
                [[r["attack"], r["method"] or "none ran", r["leak_rate"], r["recovery_ratio"],
                  r["reference_leak_rate"], r["max_seconds"]] for r in robust])
    ev_rows = [r for r in results if r.get("kind") == "evaluation"]
    print_table("Forgetting and utility", ["method", "forget quality", "model utility", "forget keyword acc"],
                [[r["method"], r["summary"].get("forget_quality"), r["summary"].get("model_utility"),
                  r["summary"].get("forget_keyword_accuracy")] for r in ev_rows])
    scale_rows = [[r["method"], s["n_targets"], s["unlearn_seconds"], s.get("latency_s_forget"),
                   s.get("latency_s_retain"), s.get("tokens_per_query_forget"), s.get("tokens_per_query_retain"),
                   s["forget_leak_rate"], s["retain_keyword_accuracy"], s["over_refusal"]]
                  for r in results if r.get("kind") == "scale" for s in r["stages"]]
    print_table("Scale sweep (per target query / per retain query: the retain questions are the same at every size)",
                ["method", "targets", "unlearn s", "s/target q", "s/retain q", "tok/target q", "tok/retain q",
                 "leak", "retain acc", "over-refusal"], scale_rows)
    print(f"\nwritten: {out_dir / 'robustness.json'}, {report['html']}, {report['markdown']} "
          f"({bundle['seconds']:.0f} s)")
    return bundle


if __name__ == "__main__":
    main()
