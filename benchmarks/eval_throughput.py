"""The TOFU evaluation suite on the embedded model: wall time by phase, tokens/s, peak memory,
and agreement with OpenUnlearning's per-example values when its output is at hand.

By default it runs what OpenUnlearning's reference run did (../shared/reference/
openunlearning-tofu-forget01): untuned SmolLM2, forget01 (forget01_perturbed,
retain_perturbed, real_authors_perturbed, world_facts_perturbed, holdout01), system prompt
"You are a helpful assistant.", greedy generation up to 200 new tokens.

    python benchmarks/eval_throughput.py --out runs/eval_throughput.json
    python benchmarks/eval_throughput.py --eval-limit 40 --max-new-tokens 64     # a quick look
    python benchmarks/eval_throughput.py --batch1-forget                          # also: forget generations at batch 1
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from unlearnkit.data import builtin_benchmark_dir, load_task
from unlearnkit.evaluation.openunlearning import compare, load_eval
from unlearnkit.evaluation.tofu import EvalConfig, evaluate_tofu
from unlearnkit.io import write_json_atomic
from unlearnkit.models import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOFU = SHARED / "data" / "tofu"
REFERENCE = SHARED / "reference" / "openunlearning-tofu-forget01" / "TOFU_EVAL.json.gz"
OPENUNLEARNING_SECONDS = 2691  # its run of this suite on this machine (reference timings.json)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default=str(TOFU) if TOFU.exists() else "builtin")
    ap.add_argument("--forget", default="forget01")
    ap.add_argument("--eval-limit", type=int, default=None, help="records per evaluation split (default: all)")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=EvalConfig.batch_size, help="answers per scoring forward")
    ap.add_argument("--gen-batch-size", type=int, default=EvalConfig.gen_batch_size, help="decoder slots")
    ap.add_argument("--system-prompt", default=None, help="override the model's system prompt")
    ap.add_argument("--reference", type=Path, default=REFERENCE if REFERENCE.exists() else None,
                    help="OpenUnlearning's TOFU_EVAL.json(.gz) to compare with")
    ap.add_argument("--batch1-forget", action="store_true",
                    help="also generate the forget questions one at a time and compare those texts")
    ap.add_argument("--phases", action="store_true",
                    help="afterwards, time scoring alone and generation alone (the suite fuses them)")
    ap.add_argument("--out", type=Path, default=None, help="write figures (and the whole result) as JSON")
    args = ap.parse_args()

    if args.data == "builtin":
        root, forget = builtin_benchmark_dir(), None
    else:
        root, forget = Path(args.data), args.forget
    task = load_task(root, forget=forget, eval_limit=args.eval_limit)
    t0 = time.perf_counter()
    model = load_model(args.model)
    if args.system_prompt is not None:
        model.chat_format = model.chat_format.with_overrides(system_prompt=args.system_prompt)
    load_s = time.perf_counter() - t0

    cfg = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, gen_batch_size=args.gen_batch_size)
    result = evaluate_tofu(model, task, config=cfg)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the optional phases
    if args.phases:  # the two phases apart, on the same model (scoring, then generation)
        pairs = [(r.question, a) for records in (task.forget_eval, task.retain_eval) for r in records
                 for a in (r.answer, r.paraphrased_answer, *r.perturbed_answers)]
        pairs += [(r.question, a) for records in task.general_evals.values() for r in records
                  for a in (r.answer, *r.perturbed_answers)]
        pairs += [(r.question, r.answer) for r in (*task.forget, *task.holdout)]
        pairs = list(dict.fromkeys(pairs))
        t0 = time.perf_counter()
        model.score([q for q, _ in pairs], [a for _, a in pairs], batch_size=cfg.batch_size)
        score_s = time.perf_counter() - t0
        questions = [r.question for records in (task.forget_eval, task.retain_eval, *task.general_evals.values())
                     for r in records]
        t0 = time.perf_counter()
        texts = model.generate(questions, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size)
        gen_s = time.perf_counter() - t0
        gen_tokens = sum(len(model.tokenizer(x, add_special_tokens=False)["input_ids"]) for x in texts)
        phases = {"scoring_seconds": round(score_s, 1), "scoring_pairs_per_second": round(len(pairs) / score_s, 1),
                  "generation_seconds": round(gen_s, 1), "generation_tokens_per_second": round(gen_tokens / gen_s, 1)}
    else:
        phases = {}
    t = result["timings"]
    splits = ("forget", "retain", "real_authors", "world_facts")
    generated = [row["generation"] for s in splits for row in result["per_example"].get(s, []) if "generation" in row]
    new_tokens = sum(len(model.tokenizer(g, add_special_tokens=False)["input_ids"]) for g in generated)
    figures = {
        "model": model.name, "data": str(root), "eval_limit": args.eval_limit, "load_seconds": round(load_s, 2),
        "chat_format": model.chat_format.to_json(), "batch_size": cfg.batch_size, "gen_batch_size": cfg.gen_batch_size,
        "suite_seconds": round(result["summary"]["seconds"], 1),
        "fused": t["fused"], "scoring_and_generation_seconds": round(t["scoring_and_generation_seconds"], 1),
        "pairs_scored": t["pairs_scored"], "questions_generated": t["questions_generated"],
        "generated_tokens": new_tokens,
        "speedup_vs_openunlearning": round(OPENUNLEARNING_SECONDS / result["summary"]["seconds"], 2),
        "peak_memory_mb": round(peak_mb), **phases,
        "model_utility": result["summary"]["model_utility"], "forget_prob": result["summary"]["forget_prob"],
    }
    for key, value in figures.items():
        print(f"{key:34s} {value}")

    if args.reference is not None and args.eval_limit is None:
        ou = load_eval(args.reference)
        report = compare(result, ou)
        figures["openunlearning"] = report
        print("\nper-example agreement with OpenUnlearning (relative gap; within 1e-4)")
        for name, g in report["per_example"].items():
            print(f"  {name:30s} median {g['median_rel_gap']:.2e}  max {g['max_rel_gap']:.2e}  "
                  f"{g['within_tol']}/{g['n']} within")
        for name, v in report["summary"].items():
            print(f"  {name:30s} ours {v['ours']:.4f}  openunlearning {v['openunlearning']:.4f}")
        for split, g in report["generation"].items():
            print(f"  generations equal ({split}, batch {cfg.gen_batch_size}): {g['same']}/{g['n']}")
        if args.batch1_forget:
            texts = model.generate([r.question for r in task.forget_eval], max_new_tokens=args.max_new_tokens,
                                   batch_size=1, progress="forget at batch 1")
            theirs = [ou["forget_Q_A_ROUGE"]["value_by_index"][str(i)]["generation"] for i in range(len(texts))]
            ours_b = [row["generation"] for row in result["per_example"]["forget"]]
            figures["forget_batch1"] = {
                "equal_openunlearning": sum(a == b for a, b in zip(texts, theirs)),
                "equal_default_batch": sum(a == b for a, b in zip(texts, ours_b)), "n": len(texts)}
            print(f"  forget generations at batch 1: {figures['forget_batch1']}")
    if args.out:
        write_json_atomic(args.out, {"figures": figures, "result": result})


if __name__ == "__main__":
    main()
