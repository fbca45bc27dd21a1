"""How long the gateway takes to verify one forget request, and what it finds.

Starts ``unlearnkit serve``'s app on a free loopback port (the embedded SmolLM2 by default), registers one
target (a TOFU ``forget10`` author when a TOFU copy is found, else a built-in benchmark person), and waits for
the ``target.verified`` audit event. Prints the seconds from the registration to the event, the seconds the
verification itself ran, and its figures (leak and refusal rates, overall and per kind of probe).
Goal: one target verified within 60 s on a CPU with the embedded model. Measure on an idle machine.

    python benchmarks/verify_target.py                          # embedded SmolLM2, TOFU author (or built-in person)
    python benchmarks/verify_target.py --subject builtin        # a built-in benchmark person
    python benchmarks/verify_target.py --model tiny             # a smoke run (the random tiny model)
    python benchmarks/verify_target.py --guard none --no-prompt-filter --out verify.json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx

from unlearnkit.service import ServeSettings, start_background_server

DEFAULT_TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def pick_target(subject: str, tofu: Path) -> tuple[dict, str]:
    """The target to register (as the admin API takes it) and where it came from."""
    if subject in ("tofu", "auto") and (tofu / "full.jsonl").is_file() and (tofu / "forget10.jsonl").is_file():
        from unlearnkit.data.indirect_probes import tofu_authors, tofu_target

        authors = tofu_authors(tofu, "full")
        return tofu_target(authors[-1]).to_json(), f"TOFU forget10 author ({tofu})"
    if subject == "tofu":
        sys.exit(f"no TOFU copy at {tofu}: pass --tofu DIR or --subject builtin")
    from unlearnkit.data.indirect_probes import synthetic_people, synthetic_target

    return synthetic_target(synthetic_people(1, seed=0)[0]).to_json(), "built-in benchmark person"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="upstream: default the embedded SmolLM2; tiny, a path or a URL")
    ap.add_argument("--guard", default="prompt", help="prompt | eco | alu | none")
    ap.add_argument("--no-prompt-filter", action="store_true", help="let named questions reach the guard")
    ap.add_argument("--subject", choices=("auto", "tofu", "builtin"), default="auto")
    ap.add_argument("--tofu", type=Path, default=DEFAULT_TOFU, help="a TOFU copy (full.jsonl, forget10.jsonl)")
    ap.add_argument("--probes", type=int, default=12, help="probes per target (direct, indirect, attacked)")
    ap.add_argument("--max-tokens", type=int, default=48, help="new tokens per probe")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    ap.add_argument("--out", type=Path, default=None, help="also write the result as JSON (atomically)")
    args = ap.parse_args()

    token = secrets.token_hex(24)
    auth = {"Authorization": f"Bearer {token}"}
    target, source = pick_target(args.subject, args.tofu)
    db = Path(tempfile.mkdtemp(prefix="verify-target-")) / "registry.db"
    settings = ServeSettings(model=None if args.model in (None, "smollm2") else args.model, guard=args.guard,
                             db_path=db, admin_token=token, log_level="warning", prompt_filter=not args.no_prompt_filter,
                             verify_probes=args.probes, verify_max_tokens=args.max_tokens,
                             request_timeout_s=args.timeout)
    t_load = time.perf_counter()
    handle = start_background_server(settings)
    load_s = time.perf_counter() - t_load
    try:
        with httpx.Client(base_url=handle.url, headers=auth, timeout=60) as http:
            t0 = time.perf_counter()
            http.post("/admin/targets", json=target).raise_for_status()
            event = None
            while time.perf_counter() - t0 < args.timeout:
                rows = http.get("/admin/audit", params={"action": "target.verified", "limit": 10}).json()["data"]
                if rows:
                    event = rows[0]
                    break
                time.sleep(0.1)
            until_event = time.perf_counter() - t0
    finally:
        handle.stop()
    if event is None:
        sys.exit(f"no target.verified event within {args.timeout:g} s")
    detail = event["detail"]
    result = {"target": target["name"], "source": source, "model": args.model or "smollm2", "guard": args.guard,
              "prompt_filter": not args.no_prompt_filter, "server_start_s": round(load_s, 2),
              "seconds_to_event": round(until_event, 2), "verification_seconds": detail.get("seconds"),
              "registry_version": event["version"],
              **{k: detail.get(k) for k in ("status", "reason", "probes", "leak_rate", "refusal_rate", "by_kind",
                                            "max_tokens") if k in detail},
              "results": detail.get("results")}
    print(f"target: {target['name']} ({source}); model {result['model']}, guard {args.guard}")
    print(f"seconds from registration to the target.verified event: {until_event:.1f} "
          f"(the verification ran {detail.get('seconds')} s; goal <= 60 s)")
    print(f"status {detail.get('status')}" + (f": {detail['reason']}" if detail.get("reason") else ""))
    if detail.get("status") == "done":
        print(f"probes {detail['probes']}: leak rate {detail['leak_rate']:.2f}, refusal rate {detail['refusal_rate']:.2f}")
        for kind, row in detail["by_kind"].items():
            if row["probes"]:
                print(f"  {kind:9s} n={row['probes']:2d}  leak {row['leak_rate']:.2f}  refused {row['refusal_rate']:.2f}")
    if args.out:
        from unlearnkit.io import write_json_atomic

        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=1))


if __name__ == "__main__":
    main()
