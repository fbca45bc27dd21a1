"""ECO on the embedded model and the built-in benchmark: forgetting, side effects, classifier, latency.

1. the demo's flow: the built-in benchmark, the target model (forget + retain) and the retain
   model (retain only), fine-tuned and evaluated with the demo's cache;
2. ``unlearnkit unlearn --method eco`` on the target, once per encoder (minilm, llm); the σ
   search runs once and its σ is reused for the other encoder;
3. the TOFU suite on each guard: forget quality (vs the retain model), model utility, forget
   truth ratio / ROUGE / keyword accuracy;
4. the classifier: recall on forget questions and their paraphrases (also with paraphrases left
   out of training: the held-out figure), false-positive rate on retain questions (training
   negatives), holdout people (never seen: same question templates, other people) and general
   questions; "clf" = the classifier alone (p > τ), "guard" = what the guard flags (adds the
   name match);
5. added latency per query: one query at a time, 64-token greedy generation, guard vs bare model,
   median ms over unflagged (retain) and flagged (forget) questions, plus the classifier alone;
6. if ``/work/shared/data/tofu`` exists, the classifier on TOFU forget01 (classifier only).

    python benchmarks/eco.py --quick --out runs/eco_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def rate(flags) -> float | None:
    flags = list(flags)
    return sum(bool(f) for f in flags) / len(flags) if flags else None


def classifier_figures(guard, sets: dict[str, list[str]]) -> dict:
    """Per set: share flagged by the classifier alone and by the guard (classifier or name match)."""
    out = {}
    for name, texts in sets.items():
        flags, probs, _ = guard.classify(texts)
        out[name] = {"n": len(texts), "clf": rate(probs > guard.classifier.threshold), "guard": rate(flags)}
    return out


def heldout_paraphrase_recall(target, task, options) -> float | None:
    """Train on forget questions only (no paraphrases), report recall on the paraphrased questions."""
    from unlearnkit.data.targets import targets_from_records
    from unlearnkit.methods.eco import ECOGuard
    from unlearnkit.methods.eco_prompts import examples_from_records, negatives_from_records

    paras = [r.paraphrased_question for r in task.forget if r.paraphrased_question]
    if not paras:
        return None
    stripped = [replace(r, paraphrased_question=None) for r in task.forget]
    guard = ECOGuard(target, targets_from_records(stripped), replace(options, sigma_search=False),
                     examples=examples_from_records(stripped),
                     negatives=negatives_from_records(task.retain, options.max_negatives, options.seed))
    _, probs, _ = guard.classify(paras)
    return rate(probs > guard.classifier.threshold)


def latency(target, guard, questions: list[str], max_new_tokens: int) -> dict:
    """Median per-query ms: bare generation, guarded generation, and the guard's classifier alone."""
    bare_ms, guard_ms, clf_ms, added = [], [], [], []
    for q in questions:
        t0 = time.perf_counter()
        target.generate([q], max_new_tokens=max_new_tokens, batch_size=1)
        t1 = time.perf_counter()
        guard.generate([q], max_new_tokens=max_new_tokens, batch_size=1)
        t2 = time.perf_counter()
        guard.classify([q])
        t3 = time.perf_counter()
        bare_ms.append(1000 * (t1 - t0))
        guard_ms.append(1000 * (t2 - t1))
        clf_ms.append(1000 * (t3 - t2))
        added.append(1000 * ((t2 - t1) - (t1 - t0)))
    med = statistics.median
    return {"n": len(questions), "bare_ms": med(bare_ms), "guard_ms": med(guard_ms), "added_ms": med(added),
            "classifier_ms": med(clf_ms)}


def tofu_classifier(target, options, quick: bool) -> dict | None:
    """Classifier only on TOFU forget01: recall on its questions and paraphrases, FPR elsewhere."""
    if not TOFU_DIR.is_dir():
        return None
    from unlearnkit.data import load_split
    from unlearnkit.data.targets import targets_from_records
    from unlearnkit.methods.eco import ECOGuard
    from unlearnkit.methods.eco_prompts import examples_from_records, negatives_from_records

    forget = load_split(TOFU_DIR, "forget01_perturbed")
    retain_eval = load_split(TOFU_DIR, "retain_perturbed")
    held = {r.question for r in retain_eval}
    retain = [r for r in load_split(TOFU_DIR, "retain99") if r.question not in held]
    limit = 300 if quick else options.max_negatives
    negatives = negatives_from_records(retain, limit, options.seed)
    n_eval = 40 if quick else None
    sets = {
        "retain (held out)": [r.question for r in retain_eval][:n_eval],
        "holdout01": [r.question for r in load_split(TOFU_DIR, "holdout01")][:n_eval],
        "real_authors": [r.question for r in load_split(TOFU_DIR, "real_authors")][:n_eval],
        "world_facts": [r.question for r in load_split(TOFU_DIR, "world_facts")][:n_eval],
    }
    opts = replace(options, sigma_search=False)
    t0 = time.perf_counter()
    # as applied: questions and paraphrases of forget01 are positives
    full = ECOGuard(target, targets_from_records(forget), opts, examples=examples_from_records(forget),
                    negatives=negatives)
    train_s = time.perf_counter() - t0
    res = {"train_seconds": train_s, "negatives": len(negatives)}
    res["forget01 (train)"] = classifier_figures(full, {"x": [r.question for r in forget]})["x"]
    # held out: questions only; recall on paraphrases, and 2-fold recall on the questions themselves
    stripped = [replace(r, paraphrased_question=None) for r in forget]
    q_only = ECOGuard(target, targets_from_records(stripped), opts, examples=examples_from_records(stripped),
                      negatives=negatives)
    paras = [r.paraphrased_question for r in forget if r.paraphrased_question]
    res["forget01 paraphrases (held out)"] = classifier_figures(q_only, {"x": paras})["x"]
    hits = []
    for fold in (0, 1):
        train = [r for i, r in enumerate(stripped) if i % 2 != fold]
        test = [r.question for i, r in enumerate(stripped) if i % 2 == fold]
        g = ECOGuard(target, targets_from_records(train), opts, examples=examples_from_records(train),
                     negatives=negatives)
        _, probs, _ = g.classify(test)
        hits.extend(probs > g.classifier.threshold)
    res["forget01 questions (2-fold held out)"] = {"n": len(hits), "clf": rate(hits), "guard": None}
    for name, fig in classifier_figures(full, sets).items():
        res[name] = fig
    return res


def print_classifier_table(title: str, figures: dict[str, dict]) -> None:
    rows = [(enc, name, f) for enc, sets in figures.items() for name, f in sets.items() if isinstance(f, dict)]
    print(f"\n{title}")
    print(f"{'encoder':<8} {'set':<36} {'n':>4} {'clf':>7} {'guard':>7}")
    for enc, name, f in rows:
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{enc:<8} {name:<36} {f['n']:>4} {fmt(f['clf']):>7} {fmt(f['guard']):>7}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/eco_bench.json", help="JSON results file")
    ap.add_argument("--model", default=None, help="base model spec (default: the embedded SmolLM2)")
    ap.add_argument("--encoders", default="minilm,llm", help="classifier encoders to compare (comma-separated)")
    ap.add_argument("--latency-queries", type=int, default=12, help="queries per latency measurement")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="tokens per latency generation")
    ap.add_argument("--eval-max-new-tokens", type=int, default=48, help="tokens per TOFU-suite generation")
    ap.add_argument("--no-tofu", action="store_true", help="skip the TOFU forget01 classifier figures")
    ap.add_argument("--quick", action="store_true", help="short run: fewer queries/steps, short generations")
    args = ap.parse_args(argv)
    if args.quick:
        args.latency_queries = min(args.latency_queries, 2)

    from unlearnkit.methods.eco import ECO
    from unlearnkit.reports.table import comparison_row, print_table
    from unlearnkit.training.config import TrainConfig
    from unlearnkit.workflows.demo import DemoConfig, prepare_demo_models
    from unlearnkit.workflows.evaluate import cached_evaluate
    from unlearnkit.workflows.unlearn import unlearn

    t_start = time.perf_counter()
    out = Path(args.out)
    run_dir = out.with_suffix("")
    cfg = DemoConfig()
    dm = prepare_demo_models(cfg, args.model, keep_retain=True)
    data_dir, task, cache, target, retain = dm.data_dir, dm.task, dm.cache, dm.target, dm.retain
    eval_cfg = replace(cfg.eval, max_new_tokens=args.eval_max_new_tokens)

    def evaluate(model, name, config, reference=None):
        # the demo's cached evaluations when the configuration is the demo's, else files of this run
        path = cache / name / "eval.json" if config == cfg.eval else run_dir / f"{name}_eval.json"
        return cached_evaluate(model, task, path, config, reference=reference)

    retain_eval = evaluate(retain, "retain", eval_cfg)
    retain_eval = evaluate(retain, "retain", eval_cfg, retain_eval)
    target_eval = evaluate(target, "target", eval_cfg, retain_eval)
    # --quick: the guards are scored only (no generation: no ROUGE / keyword figures), first encoder only
    guard_eval_cfg = replace(eval_cfg, generate=False) if args.quick else eval_cfg
    del retain
    rows = [comparison_row("target (before)", target_eval["summary"]),
            comparison_row("retain (gold)", retain_eval["summary"])]
    target_spec = str(cache / "target" / "model")

    results: dict = {"data": str(data_dir), "model": args.model or "smollm2", "quick": args.quick,
                     "sizes": {"forget": len(task.forget), "retain": len(task.retain), "holdout": len(task.holdout),
                               **{k: len(v) for k, v in task.general_evals.items()}},
                     "encoders": {}}
    figures: dict[str, dict] = {}
    sigma = None
    general = [r.question for recs in task.general_evals.values() for r in recs]
    for enc in [e.strip() for e in args.encoders.split(",") if e.strip()]:
        overrides = {"encoder": enc}
        if sigma is not None:
            overrides.update(sigma=sigma, sigma_search=False)
        elif args.quick:
            overrides.update(sigma_steps=3)
        method = ECO(**overrides)
        print(f"[eco bench] unlearn --method eco encoder={enc}", file=sys.stderr)
        guard, record = unlearn(target, task, method, TrainConfig(), run_dir / f"eco_{enc}", model_spec=target_spec)
        if sigma is None:
            sigma = guard.sigma
        fig = classifier_figures(guard, {
            "forget questions (train)": [r.question for r in task.forget],
            "forget paraphrases (train)": [r.paraphrased_question for r in task.forget if r.paraphrased_question],
            "retain questions (train negatives)": [r.question for r in task.retain],
            "holdout people (unseen)": [r.question for r in task.holdout],
            "general questions (unseen)": general,
        })
        fig["forget paraphrases (held out)"] = {"n": len(task.forget), "clf": heldout_paraphrase_recall(
            target, task, guard.options), "guard": None}
        figures[enc] = fig
        lat = {"unflagged (retain)": latency(target, guard, [r.question for r in task.retain][: args.latency_queries],
                                             args.max_new_tokens),
               "flagged (forget)": latency(target, guard, [r.question for r in task.forget][: args.latency_queries],
                                           args.max_new_tokens)}
        ev = None
        if not (args.quick and results["encoders"]):
            print(f"[eco bench] evaluating eco({enc})", file=sys.stderr)
            ev = cached_evaluate(guard, task, run_dir / f"eco_{enc}" / "eval.json", guard_eval_cfg,
                                 reference=retain_eval)
            rows.append(comparison_row(f"eco ({enc})", ev["summary"], record["seconds"]))
        results["encoders"][enc] = {"sigma": guard.sigma, "sigma_search": guard.sigma_log,
                                    "unlearn_seconds": record["seconds"], "classifier": fig,
                                    "classifier_train": guard.classifier.stats, "latency": lat,
                                    "summary": ev["summary"] if ev else None}
        if enc == "minilm" or "tofu_options" not in results:
            results["tofu_options"] = guard.options
    print_table(rows, title=f"ECO on the built-in benchmark ({target.name})")
    print_classifier_table("classifier: share of questions flagged (recall on forget sets, FPR on the others)",
                           figures)
    print("\nadded latency per query (64-token greedy generation, batch 1; median ms)")
    print(f"{'encoder':<8} {'queries':<20} {'n':>3} {'bare':>8} {'guard':>8} {'added':>8} {'classifier':>10}")
    for enc, res in results["encoders"].items():
        for name, lat in res["latency"].items():
            print(f"{enc:<8} {name:<20} {lat['n']:>3} {lat['bare_ms']:>8.0f} {lat['guard_ms']:>8.0f} "
                  f"{lat['added_ms']:>8.0f} {lat['classifier_ms']:>10.1f}")
    for enc, res in results["encoders"].items():
        log = res["sigma_search"] or {}
        if log.get("log"):
            print(f"\nσ search ({enc}): metric {log['metric']}, target {log['target']:.4f} ({log['target_source']}), "
                  f"bare forget {log['bare_forget_metric']:.4f}, σ = {log['sigma']:.3f} after "
                  f"{len(log['log'])} steps / {log['evaluations']} evaluations ({log['seconds']:.0f} s), "
                  f"reached: {log['reached']}")
    options = results.pop("tofu_options", None)
    if not args.no_tofu and options is not None:
        tofu = {}
        for enc in results["encoders"]:
            print(f"[eco bench] TOFU forget01 classifier encoder={enc}", file=sys.stderr)
            tofu[enc] = tofu_classifier(target, replace(options, encoder=enc), args.quick)
        if any(v is not None for v in tofu.values()):
            results["tofu_forget01"] = tofu
            print_classifier_table("TOFU forget01, classifier only (recall on forget01 sets, FPR on the others)",
                                   {k: v for k, v in tofu.items() if v})
    results["rows"] = rows
    results["seconds"] = time.perf_counter() - t_start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults: {out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
