"""Questions that refer to a target without naming it: how many the guards catch, and at what cost.

Probe sets (``unlearnkit.data.indirect_probes``):

* ``synthetic``: the built-in benchmark's invented people (the first ``--targets`` are targets),
  referred to by their book, prize, birthplace and year, or parents' trades;
* ``tofu``: TOFU's ``--tofu-split`` authors as targets (their questions that never name them, and
  named questions with the name replaced by one of their titles), ``--tofu-others`` retain authors.

Per set it prints the share refused of: ``indirect`` probes (goal >= 90 %), ``neighbour`` questions
about the same works, prizes, places and dates (goal <= 2 %), ``other`` people referred to the same
way (not targets) and ``unrelated`` questions (goal <= 1 %), for

* ``names``: the gateway's name filter alone (``TargetMatcher.mentions``: the filter before this);
* ``detector``: the reference detector alone, calibrated split-conformally on neighbour questions
  from the *calibration* templates (the neighbours measured here use the disjoint *evaluation*
  templates);
* ``filter``: names or detector (what the gateway's prompt filter now refuses);
* with ``--guards``: ``eco`` (ECO's classifier decision: its own classifier, the name match, or the
  detector; the tiny built-in model carries it, so only the classification is measured) and
  ``alu`` (targets ALU's retrieval returns; a question with no retrieved target is answered
  without the agents), both with their option ``neighbour_budget`` at ``--budget`` (their own
  classifier threshold / key-term and embedding retrieval calibrated on the detector's calibration
  neighbours; ECO's classifier alone also ignores prompts that name someone else, option
  ``other_names``); ``-uncal``: without that calibration; ``-names``: with neither the detector, the
  calibration nor ``other_names`` (the guards as first built).
  ``benchmarks/indirect_e2e.py`` measures the whole stack's answers.
  ECO flags and ALU retrieves; neither refuses: a flagged question is answered with corrupted
  embeddings, a retrieved target goes to ALU's audit, so their neighbour and unrelated shares are
  the cost in extra work and answer quality, not refusals.

Then the latency per request at ``--latency-targets`` targets (the built-in benchmark's people),
median and p95 ms over single questions of: the question's embedding alone, the detector alone
(``detect_all``: the embedding, one product against the statement matrix, the exact facets), the
name filter alone and the whole prompt filter (``PromptMatcher.mentions``: names, then the
detector). Latency needs an idle machine: run it alone.

    nice -n 19 python benchmarks/indirect_refs.py --sets tofu --tofu-split forget01 --latency-targets 0 --show-misses 50
    python benchmarks/indirect_refs.py --guards --latency-targets 1000   # uncontended, for the figures
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
KINDS = ("indirect", "neighbour", "other", "unrelated")


def share(flags) -> float | None:
    flags = list(flags)
    return round(sum(bool(f) for f in flags) / len(flags), 4) if flags else None


def detector_for(targets, budget: float):
    from unlearnkit.data.reference_detection import ReferenceDetector

    det = ReferenceDetector(budget=budget).build(targets)
    det.calibrate()
    return det


def guard_flags(probes, targets, det, which: set[str], budget: float) -> dict[str, dict[str, float | None]]:
    """Per guard in ``which``: share of each probe kind ECO flags (its classifier, the name match, the
    detector) or ALU retrieves a target for; with the detector and the guard's own decision calibrated on
    neighbour questions (``neighbour_budget``), with the detector only (``-uncal``), and with neither
    (``-names``: the guard as it was first)."""
    out: dict[str, dict[str, float | None]] = {}
    if "eco" in which:
        from unlearnkit.methods.eco import ECOGuard, ECOOptions
        from unlearnkit.models.tiny import load_tiny

        cache: dict = {}
        for label, refs, nb, others in (("eco", True, budget, True), ("eco-uncal", True, None, True),
                                        ("eco-names", False, None, False)):
            guard = ECOGuard(load_tiny(), targets, ECOOptions(sigma_search=False, references=refs,
                                                              neighbour_budget=nb, other_names=others),
                             references=det if refs else None, embedding_cache=cache)
            out[label] = {k: share(guard.flag(probes.texts(k))) for k in KINDS}
    if "alu" in which:
        from unlearnkit.methods.alu_retrieval import TargetIndex, make_embedder

        embedder = make_embedder("minilm")
        for label, refs, nb in (("alu", det, budget), ("alu-uncal", det, None), ("alu-names", None, None)):
            index = TargetIndex(embedder, references=refs, neighbour_budget=nb).build(targets)
            out[label] = {k: share(bool(index.retrieve(q)) for q in probes.texts(k)) for k in KINDS}
    return out


def evaluate(name: str, probes, budget: float, guards: set[str]) -> dict:
    from unlearnkit.data.target_matching import TargetMatcher

    t0 = time.perf_counter()
    det = detector_for(probes.targets, budget)
    build_s = time.perf_counter() - t0
    names = TargetMatcher(probes.targets)
    rows: dict[str, dict] = {"names": {}, "detector": {}, "filter": {}}
    misses: list[str] = []
    false_refusals: list[str] = []
    for kind in KINDS:
        texts = probes.texts(kind)
        by_name = [bool(names.mentions(t)) for t in texts]
        by_ref = [bool(det.detect(t)) for t in texts]
        rows["names"][kind] = share(by_name)
        rows["detector"][kind] = share(by_ref)
        rows["filter"][kind] = share(a or b for a, b in zip(by_name, by_ref))
        if kind == "indirect":
            misses = [t for t, a, b in zip(texts, by_name, by_ref) if not (a or b)]
        elif kind in ("neighbour", "unrelated"):
            false_refusals += [t for t, b in zip(texts, by_ref) if b]
    rows.update(guard_flags(probes, probes.targets, det, guards, budget))
    return {"set": name, "counts": probes.counts(), "targets": len(probes.targets), "build_s": round(build_s, 2),
            "calibration": det.calibration, "refused": rows, "missed_indirect": misses,
            "refused_neighbours": false_refusals}


def percentiles(ms: list[float]) -> tuple[float, float]:
    import numpy as np

    return round(float(np.percentile(ms, 50)), 3), round(float(np.percentile(ms, 95)), 3)


def latency(n_targets: int, budget: float, n_queries: int = 200) -> dict:
    from unlearnkit.data.indirect_probes import synthetic_probes, synthetic_people, synthetic_target
    from unlearnkit.data.target_matching import TargetMatcher
    from unlearnkit.service.guard_stack import PromptMatcher

    people = synthetic_people(n_targets, seed=7)
    targets = [synthetic_target(p) for p in people]
    t0 = time.perf_counter()
    det = detector_for(targets, budget)
    build_s = time.perf_counter() - t0
    probes = synthetic_probes(20, 40, seed=3)
    queries = [p.text for p in probes.probes][:n_queries]
    names = TargetMatcher(targets)
    prompt_filter = PromptMatcher(names, det)
    det.detect("warm-up question")

    def timed(fn) -> list[float]:
        out = []
        for q in queries:
            t = time.perf_counter()
            fn(q)
            out.append((time.perf_counter() - t) * 1000)
        return out

    pieces = {"embedding": lambda q: det.encoder.encode([q]), "detector": det.detect_all,
              "names": names.mentions, "prompt_filter": prompt_filter.mentions}
    out = {"targets": n_targets, "statements": int(det._matrix.shape[0]), "build_s": round(build_s, 2),
           "queries": len(queries)}
    for label, fn in pieces.items():
        out[f"{label}_ms_median"], out[f"{label}_ms_p95"] = percentiles(timed(fn))
    return out


def print_table(result: dict, show: int = 8) -> None:
    print(f"\n== {result['set']}: {result['targets']} targets, probes {result['counts']}, "
          f"threshold {result['calibration'].get('threshold'):.3f} (budget {result['calibration'].get('budget')}, "
          f"{result['calibration'].get('neighbours')} calibration neighbours)")
    print(f"{'':10s} " + " ".join(f"{k:>10s}" for k in KINDS))
    for row, vals in result["refused"].items():
        print(f"{row:10s} " + " ".join(f"{'-' if vals.get(k) is None else f'{100 * vals[k]:.1f}%':>10s}"
                                      for k in KINDS))
    if result["missed_indirect"][:show]:
        print(f"missed indirect probes ({len(result['missed_indirect'])}, first {show}):",
              *result["missed_indirect"][:show], sep="\n  ")
    if result["refused_neighbours"][:show]:
        print(f"refused neighbour or unrelated questions ({len(result['refused_neighbours'])}, first {show}):",
              *result["refused_neighbours"][:show], sep="\n  ")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=20, help="synthetic set: people who are targets")
    ap.add_argument("--others", type=int, default=80, help="synthetic set: people who are not targets")
    ap.add_argument("--tofu", default=str(TOFU_DIR), help="TOFU directory ('' to skip)")
    ap.add_argument("--tofu-split", default="forget10")
    ap.add_argument("--tofu-others", type=int, default=60)
    ap.add_argument("--budget", type=float, default=0.02, help="false-refusal budget on neighbour questions")
    ap.add_argument("--guards", action="store_true", help="also ECO's classifier and ALU's retrieval")
    ap.add_argument("--latency-targets", type=int, default=1000, help="0 to skip the latency figure")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default="synthetic,tofu", help="probe sets to measure (comma-separated; '' for none)")
    ap.add_argument("--show-misses", type=int, default=8, help="missed indirect probes and refused neighbours to print")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    from unlearnkit.data.indirect_probes import load_tofu_probes, synthetic_probes

    guards = {"eco", "alu"} if args.guards else set()
    results = {"budget": args.budget, "sets": []}
    wanted = {x.strip() for x in args.sets.split(",") if x.strip()}
    unknown = wanted - {"synthetic", "tofu"}
    if unknown:
        ap.error(f"unknown probe set(s) {', '.join(sorted(unknown))}: choose synthetic and/or tofu")
    sets = [("synthetic", lambda: synthetic_probes(args.targets, args.others, args.seed))] if "synthetic" in wanted else []
    if "tofu" in wanted and args.tofu and Path(args.tofu, "full.jsonl").is_file():
        sets.append(("tofu", lambda: load_tofu_probes(args.tofu, args.tofu_split, args.tofu_others, args.seed)))
    elif "tofu" in wanted and args.tofu:
        print(f"no TOFU data under {args.tofu}: skipping the TOFU set", file=sys.stderr)
    for name, make in sets:
        res = evaluate(name, make(), args.budget, guards)
        results["sets"].append(res)
        print_table(res, args.show_misses)
    if args.latency_targets > 0:
        lat = latency(args.latency_targets, args.budget)
        results["latency"] = lat
        print(f"\nlatency per request at {lat['targets']} targets ({lat['statements']} statements, "
              f"{lat['queries']} questions; index built and calibrated in {lat['build_s']} s), median / p95 ms:")
        for label in ("embedding", "detector", "names", "prompt_filter"):
            print(f"  {label:14s} {lat[label + '_ms_median']:8.3f} / {lat[label + '_ms_p95']:8.3f}")
    if args.out:
        from unlearnkit.io import write_json_atomic

        write_json_atomic(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
