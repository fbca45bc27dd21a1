"""How far two TOFU benchmark caches agree: the same protocol run twice (another machine, another session,
another number of jobs) should give the same table.

    python benchmarks/compare_tofu_caches.py ~/.cache/unlearnkit/tofu/<key> /other/cache/tofu/<key>

For every final evaluation present in both: the largest relative difference of any per-example probability
or truth ratio, and how many greedy answers differ; for every sweep run: whether its selection-suite figures
(forget quality, model utility, keyword leak, forget ROUGE, privleak) agree to 4 significant digits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("forget_quality", "model_utility", "forget_keyword_accuracy", "forget_rouge", "privleak")


def compare_final(a: dict, b: dict) -> tuple[float, int, int]:
    worst, differ, answers = 0.0, 0, 0
    for split, rows in a["per_example"].items():
        if not isinstance(rows, list):  # the MIA scores: summarised by privleak
            continue
        for x, y in zip(rows, b["per_example"].get(split, [])):
            for k in ("prob", "truth_ratio"):
                if isinstance(x.get(k), float) and isinstance(y.get(k), float) and x[k] != 0:
                    worst = max(worst, abs(x[k] - y[k]) / abs(x[k]))
            if "generation" in x:
                answers += 1
                differ += x["generation"] != y.get("generation")
    return worst, differ, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    for path in sorted(args.a.glob("**/eval_final.json")):
        rel = path.relative_to(args.a)
        other = args.b / rel
        if not other.is_file():
            print(f"{rel}: only in {args.a}")
            continue
        worst, differ, answers = compare_final(json.loads(path.read_text()), json.loads(other.read_text()))
        print(f"{str(rel):78s} max relative difference {worst:.1e}, answers differing {differ}/{answers}")
    for path in sorted(args.a.glob("runs/*/*/eval_select.json")):
        rel = path.relative_to(args.a)
        other = args.b / rel
        if not other.is_file():
            continue
        sa, sb = (json.loads(p.read_text())["summary"] for p in (path, other))
        va, vb = ([float(f"{s.get(k) or 0:.4g}") for k in KEYS] for s in (sa, sb))
        print(f"{str(rel):78s} {'same' if va == vb else f'differs: {va} vs {vb}'}")


if __name__ == "__main__":
    main()
