"""Load test of ``unlearnkit serve``: concurrent chat clients while targets change.

For each guard it starts the gateway on a free loopback port (127.0.0.1 only),
registers a few targets, measures a few sequential requests (latency at rest),
then runs ``--clients`` concurrent chat clients for ``--duration`` seconds while
an admin client adds and removes targets. It stops by itself and prints:

* throughput (requests/s), p50/p95 latency (all requests, and unrelated ones only),
  errors by HTTP status (goal: zero 5xx);
* registry changes made vs found afterwards (final target list and the audit
  log's change entries; goal: zero lost);
* the latency overhead of each guard against the bare upstream ("bare" = the
  gateway with no guard and no filters).

    python benchmarks/gateway_load.py                                   # 16 clients x 60 s per guard
    python benchmarks/gateway_load.py --duration 30 --guards bare,prompt
    python benchmarks/gateway_load.py --model tiny --duration 5         # a smoke run
    python benchmarks/gateway_load.py --guards bare --clients 4 --flood  # one client floods: do the others wait?
    python benchmarks/gateway_load.py --replicas 3 --duration 60        # 3 gateway processes, one PostgreSQL registry
    python benchmarks/gateway_load.py --replicas 3 --db postgresql://USER:PASSWORD@HOST:PORT/DATABASE

With ``--replicas N`` (see ``gateway_replicas.py``) N ``unlearnkit serve`` processes share one
PostgreSQL registry (``--db``, or a throw-away server started from the installed PostgreSQL)
while targets change every second and one replica is killed and restarted; the model
defaults to ``tiny`` there, so the figures are the gateway's, not the model's.

Guards not available in this installation (eco, alu before their methods exist)
are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from unlearnkit.errors import ConfigError
from unlearnkit.models import load_model
from unlearnkit.service import ServeSettings, start_background_server
from unlearnkit.service.guard_stack import resolve_guard_class

UNRELATED = [
    "What is the capital of France?",
    "Give me one tip for writing clear emails.",
    "What is 12 times 7?",
    "Name three primary colours.",
    "How do plants make food?",
    "What is the boiling point of water in Celsius?",
    "Suggest a name for a pet goldfish.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish.",
    "What does a CPU do?",
    "Write a haiku about autumn.",
    "How many days are in a leap year?",
]
SEED_TARGETS = [
    {"name": "Marisol Quentaro", "aliases": ["M. Quentaro"], "facts": ["Marisol Quentaro was born in Lisbon in 1961."]},
    {"name": "Tobiah Fenwright", "aliases": ["Fenwright"]},
    {"name": "Ilsa Brandtmoor"},
]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def run_guard(guard: str, model, args) -> dict:
    token = secrets.token_hex(24)
    auth = {"Authorization": f"Bearer {token}"}
    db = Path(tempfile.mkdtemp(prefix=f"gateway-{guard}-")) / "registry.db"
    bare = guard == "bare"
    settings = ServeSettings(guard="none" if bare else guard, db_path=db, admin_token=token, log_level="warning",
                             default_max_tokens=args.max_tokens, max_tokens_limit=max(args.max_tokens, 64),
                             prompt_filter=not bare, output_filter=not bare,
                             max_batch_size=max(args.clients, -(-args.flood_prompts // 4) if args.flood else 1),
                             max_queue=4 * args.clients,
                             **({"batch_wait_ms": args.batch_wait_ms} if args.batch_wait_ms is not None else {}))
    handle = start_background_server(settings, model)
    rng = random.Random(args.seed)
    try:
        timeout = httpx.Timeout(args.request_timeout)
        limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
        async with httpx.AsyncClient(base_url=handle.url, timeout=timeout, limits=limits) as http:
            (await http.post("/admin/targets", headers=auth, json={"targets": SEED_TARGETS})).raise_for_status()
            served = (await http.get("/v1/models")).json()["data"][0]["id"]  # an unknown id is a 404

            async def chat(text: str):
                t0 = time.perf_counter()
                try:
                    r = await http.post("/v1/chat/completions", json={
                        "model": served, "messages": [{"role": "user", "content": text}], "max_tokens": args.max_tokens})
                    status = r.status_code
                    content = r.json()["choices"][0]["message"]["content"] if status == 200 else None
                except httpx.HTTPError as exc:
                    status, content = type(exc).__name__, None
                return time.perf_counter() - t0, status, content

            # latency at rest: sequential, unrelated prompts, guard active (targets registered)
            await chat(UNRELATED[0])  # warm-up
            idle = [(await chat(UNRELATED[i % len(UNRELATED)]))[0] for i in range(args.idle_requests)]

            seeds = [t["name"] for t in SEED_TARGETS]  # never removed: targeted prompts name these
            live: list[str] = []  # churned by the admin task
            expected = set(seeds)
            changes = {"made": 0, "failed": 0}
            results: list[tuple[float, object, bool, bool]] = []  # latency, status, targeted, refused
            deadline = time.perf_counter() + args.duration

            async def client(i: int):
                local = random.Random(args.seed * 1000 + i)
                while time.perf_counter() < deadline:
                    targeted = local.random() < args.targeted_fraction
                    text = (f"Tell me everything you know about {local.choice(seeds)}." if targeted
                            else local.choice(UNRELATED))
                    latency, status, content = await chat(text)
                    results.append((latency, status, bool(targeted), content == settings.refusal))

            async def admin():
                k = 0
                while time.perf_counter() < deadline:
                    await asyncio.sleep(args.change_interval)
                    if time.perf_counter() >= deadline:
                        break
                    if len(live) > 3 and rng.random() < 0.5:
                        name = live.pop(rng.randrange(len(live)))
                        r = await http.delete(f"/admin/targets/{name}", headers=auth)
                        ok = r.status_code == 200 and r.json()["removed"] == [name]
                        if ok:
                            expected.discard(name)
                    else:
                        name = f"Load Person {guard} {k}"
                        k += 1
                        r = await http.post("/admin/targets", headers=auth, json={"name": name, "aliases": [f"LP{k}x"]})
                        ok = r.status_code == 201
                        if ok:
                            live.append(name)
                            expected.add(name)
                    changes["made" if ok else "failed"] += 1

            flood = {"requests": 0, "statuses": Counter()}

            async def flooder():
                """One client that sends the largest request it may, again and again (--flood)."""
                while time.perf_counter() < deadline:
                    try:
                        r = await http.post("/v1/completions", json={
                            "model": served, "prompt": [f"Story number {k}:" for k in range(args.flood_prompts)],
                            "max_tokens": args.flood_max_tokens})
                        flood["statuses"][str(r.status_code)] += 1
                    except httpx.HTTPError as exc:
                        flood["statuses"][type(exc).__name__] += 1
                    flood["requests"] += 1

            t0 = time.perf_counter()
            await asyncio.gather(admin(), *(client(i) for i in range(args.clients)),
                                 *([flooder()] if args.flood else []))
            elapsed = time.perf_counter() - t0

            found = {t["name"] for t in (await http.get("/admin/targets", headers=auth)).json()["data"]}
            audit = (await http.get("/admin/audit", headers=auth,
                                    params={"action": "target.*", "limit": 10_000})).json()["data"]
            stats = (await http.get("/admin/stats", headers=auth)).json()
    finally:
        handle.stop()

    statuses = Counter(str(s) for _, s, _, _ in results)
    ok_lat = [lat for lat, s, _, _ in results if s == 200]
    unrelated = [lat for lat, s, t, _ in results if s == 200 and not t]
    return {
        "guard": guard,
        "requests": len(results),
        "seconds": elapsed,
        "throughput_rps": len(results) / elapsed if elapsed else 0.0,
        "p50_s": percentile(ok_lat, 0.5),
        "p95_s": percentile(ok_lat, 0.95),
        "unrelated_p50_s": percentile(unrelated, 0.5),
        "unrelated_p95_s": percentile(unrelated, 0.95),
        "idle_p50_s": statistics.median(idle) if idle else float("nan"),
        "statuses": dict(statuses),
        "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "errors_other": sum(n for s, n in statuses.items() if s != "200" and not s.startswith("5")),
        "refused_targeted": sum(1 for _, s, t, r in results if s == 200 and t and r),
        "targeted": sum(1 for _, s, t, _ in results if t),
        "refused_unrelated": sum(1 for _, s, t, r in results if s == 200 and not t and r),
        "registry_changes_made": changes["made"],
        "registry_changes_failed": changes["failed"],
        # seed targets are one change (one POST); the audit has one entry per target changed
        "registry_changes_in_audit": len(audit) - len(SEED_TARGETS),
        "registry_final_match": found == expected,
        "registry_lost": len(expected ^ found),
        "batches": stats.get("batches"),
        "mean_batch": (stats["requests"] / stats["batches"]) if stats.get("batches") else None,
        "batch_sizes": stats.get("batch_sizes"),
        **({"flood_requests": flood["requests"], "flood_statuses": dict(flood["statuses"]),
            # the goal: the other clients' p95 stays <= 3x their latency at rest
            "unrelated_p95_over_idle": (percentile(unrelated, 0.95) / statistics.median(idle)) if idle else None}
           if args.flood else {}),
    }


def available(guard: str) -> str | None:
    if guard in ("bare", "none"):
        return None
    try:
        resolve_guard_class(ServeSettings(guard=guard).guard)
    except ConfigError as exc:
        return str(exc)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="upstream: smollm2 (embedded; the default), tiny (the default with "
                    "--replicas), a path or a URL")
    ap.add_argument("--guards", default="bare,prompt,eco,alu", help="comma-separated: bare,none,prompt,eco,alu")
    ap.add_argument("--replicas", type=int, default=1, help="N > 1: N gateway processes on one PostgreSQL registry")
    ap.add_argument("--db", default=None, help="with --replicas: the postgresql:// registry they share (default: a "
                    "throw-away PostgreSQL started here)")
    ap.add_argument("--replica-guard", default="prompt", help="with --replicas: the guard each replica runs")
    ap.add_argument("--poll-interval", type=float, default=0.05, help="with --replicas: seconds between reads of "
                    "each replica's enforced version")
    ap.add_argument("--down-seconds", type=float, default=3.0, help="with --replicas: how long the killed replica "
                    "stays down")
    ap.add_argument("--start-timeout", type=float, default=300.0, help="with --replicas: seconds a replica may take "
                    "to start")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per guard")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--change-interval", type=float, default=1.0, help="seconds between registry changes")
    ap.add_argument("--targeted-fraction", type=float, default=0.2, help="share of prompts naming a live target")
    ap.add_argument("--idle-requests", type=int, default=5, help="sequential requests measured before the load")
    ap.add_argument("--request-timeout", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-wait-ms", type=float, default=None, help="gateway setting (default: its own)")
    ap.add_argument("--flood", action="store_true", help="add one client that floods the gateway with its largest "
                    "requests (completions of --flood-prompts prompts x --flood-max-tokens) and report the other "
                    "clients' p95 against their latency at rest")
    ap.add_argument("--flood-prompts", type=int, default=16)
    ap.add_argument("--flood-max-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.duration <= 600):
        ap.error("--clients must be 1..256 and --duration 0..600 s (this is a bounded test)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.replicas > 1:
        run_replicated(args)
        return
    args.model = args.model or "smollm2"

    guards = [g.strip() for g in args.guards.split(",") if g.strip()]
    t0 = time.perf_counter()
    model = load_model(args.model)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s; {args.clients} clients x "
          f"{args.duration:g} s per guard, max_tokens={args.max_tokens}, loopback only")
    rows = []
    for guard in guards:
        reason = available(guard)
        if reason:
            print(f"skipped {guard}: {reason}")
            continue
        row = asyncio.run(run_guard(guard, model, args))
        rows.append(row)
        print(f"{guard:>7}: {row['requests']} requests in {row['seconds']:.1f} s = {row['throughput_rps']:.2f} req/s; "
              f"p50 {row['p50_s'] * 1000:.0f} ms, p95 {row['p95_s'] * 1000:.0f} ms "
              f"(unrelated p50 {row['unrelated_p50_s'] * 1000:.0f} / p95 {row['unrelated_p95_s'] * 1000:.0f} ms); "
              f"at rest p50 {row['idle_p50_s'] * 1000:.0f} ms; statuses {row['statuses']}; 5xx {row['errors_5xx']}; "
              f"mean batch {row['mean_batch'] or 0:.1f} {row['batch_sizes']}")
        print(f"         registry: changes made {row['registry_changes_made']} (failed "
              f"{row['registry_changes_failed']}), in audit {row['registry_changes_in_audit']}, final list "
              f"{'matches' if row['registry_final_match'] else 'DIFFERS'} (lost {row['registry_lost']}); "
              f"targeted prompts refused {row['refused_targeted']}/{row['targeted']}, unrelated refused "
              f"{row['refused_unrelated']}")
        if args.flood:
            print(f"         flood: {row['flood_requests']} requests of {args.flood_prompts} x {args.flood_max_tokens} "
                  f"tokens ({row['flood_statuses']}); the others' p95 / their p50 at rest = "
                  f"{row['unrelated_p95_over_idle']:.2f} (goal <= 3)")
    base = next((r for r in rows if r["guard"] == "bare"), None)
    if base and len(rows) > 1:
        print("overhead vs bare upstream (unrelated prompts under load; sequential at rest):")
        for r in rows:
            if r is base:
                continue
            d50 = (r["unrelated_p50_s"] - base["unrelated_p50_s"]) * 1000
            d95 = (r["unrelated_p95_s"] - base["unrelated_p95_s"]) * 1000
            didle = (r["idle_p50_s"] - base["idle_p50_s"]) * 1000
            print(f"{r['guard']:>7}: p50 {d50:+.0f} ms ({d50 / (base['unrelated_p50_s'] * 1000) * 100:+.0f}%), "
                  f"p95 {d95:+.0f} ms, at rest {didle:+.0f} ms ({didle / (base['idle_p50_s'] * 1000) * 100:+.0f}%), "
                  f"throughput {r['throughput_rps'] / base['throughput_rps'] * 100 - 100:+.0f}%")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"written: {args.out}")


def run_replicated(args) -> None:
    """``--replicas N``: N gateway processes on one PostgreSQL registry (gateway_replicas.py)."""
    from gateway_replicas import report, run_replicas

    from unlearnkit.service.registry_base import is_postgres_url, mask_url
    from unlearnkit.service.temp_postgres import TempPostgres, missing_reason

    if args.replicas > 16:
        raise SystemExit("--replicas: at most 16 on one machine")
    args.model = args.model or "tiny"
    server = None
    db = args.db
    if db is None:
        reason = missing_reason()
        if reason:
            raise SystemExit(f"--replicas needs PostgreSQL: give --db postgresql://... or install it ({reason})")
        server = TempPostgres().start()
        db = server.create_database("gateway_load")
        print(f"started a throw-away PostgreSQL at {db}")
    elif not is_postgres_url(db):
        raise SystemExit(f"--db '{db}': replicas share a postgresql:// registry (SQLite serves one process)")
    print(f"{args.replicas} replicas x model {args.model}, guard {args.replica_guard}; {args.clients} clients x "
          f"{args.duration:g} s, registry {mask_url(db)}, loopback only")
    try:
        row = asyncio.run(run_replicas(args, db))
    finally:
        if server is not None:
            server.close()
    report(row)
    if args.out:
        args.out.write_text(json.dumps(row, indent=2, default=str) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
