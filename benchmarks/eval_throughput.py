"""Throughput of the TOFU evaluation suite on the embedded model, and peak memory.

Prints examples/second for the whole suite (scoring + generation), for scoring
alone (question/answer pairs per second) and for generation alone, plus the
process's peak resident memory.

    python benchmarks/eval_throughput.py                      # real TOFU when ../shared/data/tofu exists
    python benchmarks/eval_throughput.py --data builtin       # the built-in benchmark
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from unlearnkit.data import builtin_benchmark_dir, load_task
from unlearnkit.evaluation.tofu import EvalConfig, evaluate_tofu
from unlearnkit.models import load_model

TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", default=str(TOFU) if TOFU.exists() else "builtin")
    ap.add_argument("--forget", default="forget01")
    ap.add_argument("--eval-limit", type=int, default=40, help="records per evaluation split")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()

    if args.data == "builtin":
        root, forget = builtin_benchmark_dir(), None
    else:
        root, forget = Path(args.data), args.forget
    task = load_task(root, forget=forget, eval_limit=args.eval_limit)
    t0 = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - t0

    cfg = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    t0 = time.perf_counter()
    result = evaluate_tofu(model, task, config=cfg)
    suite_s = time.perf_counter() - t0
    n_examples = sum(len(rows) for key, rows in result["per_example"].items() if key != "mia")

    pairs = [(r.question, a) for r in task.forget_eval for a in (r.answer, r.paraphrased_answer, *r.perturbed_answers)]
    t0 = time.perf_counter()
    model.score([q for q, _ in pairs], [a for _, a in pairs], batch_size=args.batch_size)
    score_s = time.perf_counter() - t0
    questions = [r.question for r in task.forget_eval]
    t0 = time.perf_counter()
    outs = model.generate(questions, max_new_tokens=args.max_new_tokens)
    gen_s = time.perf_counter() - t0
    new_tokens = sum(len(model.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outs)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    figures = {
        "model": model.name, "data": str(root), "eval_limit": args.eval_limit, "load_seconds": round(load_s, 2),
        "suite_examples": n_examples, "suite_seconds": round(suite_s, 1),
        "suite_examples_per_second": round(n_examples / suite_s, 2),
        "scoring_pairs_per_second": round(len(pairs) / score_s, 1),
        "generation_questions_per_second": round(len(questions) / gen_s, 2),
        "generation_tokens_per_second": round(new_tokens / gen_s, 1),
        "peak_memory_mb": round(peak_mb),
    }
    for key, value in figures.items():
        print(f"{key:34s} {value}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
