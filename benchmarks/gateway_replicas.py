"""Gateway replicas on one shared PostgreSQL registry, under load (``gateway_load.py --replicas N``).

Starts N ``unlearnkit serve`` processes on loopback ports, all with ``--db postgresql://…``
(a throw-away PostgreSQL of its own when no ``--db`` is given), spreads ``--clients`` chat
clients over them, and changes the target list every ``--change-interval`` seconds through
the replicas in turn. Halfway through it kills one replica (SIGKILL) and restarts it after
``--down-seconds``. A watcher reads each replica's ``/admin/stats`` (the version its guard
enforces) every ``--poll-interval`` seconds. It prints:

* HTTP 5xx count (goal: 0), other statuses, and requests cut or refused by the killed replica
  (a client whose replica is down moves on to the next one, as a load balancer would);
* p50/p95 latency of answered requests;
* registry changes made vs seen by each replica's guard, the worst propagation delay
  (from the change's acknowledgement to the first poll that shows the replica enforcing it;
  goal: < 1 s; resolution: the poll interval), and whether each replica's final list matches;
* the audit trail's completeness after the kill, read from the shared registry once the run is over:
  every change the benchmark saw acknowledged (``target.add`` / ``target.remove`` with that target and
  version) and every request answered with 200 on which the guard acted (a prompt naming a target, an
  answer replaced by the refusal: a ``guard.*`` event with the response's id), as
  "audit complete: N/N" or what is missing. A 200 that involved no target has no guard event by design
  (the audit records what the guard did, not every request); those are counted apart.

    python benchmarks/gateway_load.py --replicas 3 --duration 60                      # own PostgreSQL
    python benchmarks/gateway_load.py --replicas 3 --db postgresql://u:pw@host/db     # an existing one
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

TRANSPORT_ERRORS = (httpx.TransportError,)


class Replica:
    """One ``unlearnkit serve`` process on a fixed loopback port."""

    def __init__(self, index: int, port: int, db: str, args, token: str, logs: Path):
        self.index, self.port, self.db, self.args, self.token = index, port, db, args, token
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = logs / f"replica-{index}.log"
        self.proc: subprocess.Popen | None = None
        self.up = False
        self.down_since: float | None = None
        self.down_periods: list[tuple[float, float]] = []

    def start(self) -> None:
        cmd = [sys.executable, "-m", "unlearnkit.cli", "serve", "--model", self.args.model, "--guard",
               self.args.replica_guard, "--host", "127.0.0.1", "--port", str(self.port), "--db", self.db]
        env = dict(os.environ, UNLEARNKIT_ADMIN_TOKEN=self.token, TOKENIZERS_PARALLELISM="false")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float) -> float:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.index} exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if (await http.get(self.url + "/health", timeout=2.0)).status_code == 200:
                    self.up = True
                    if self.down_since is not None:
                        self.down_periods.append((self.down_since, time.perf_counter()))
                        self.down_since = None
                    return time.perf_counter() - t0
            except TRANSPORT_ERRORS:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"replica {self.index} was not ready within {timeout:g} s; see {self.log_path}")

    def kill(self) -> None:
        self.up = False
        self.down_since = time.perf_counter()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def was_down(self, t: float) -> bool:
        return any(a <= t <= b for a, b in self.down_periods) or (self.down_since is not None and t >= self.down_since)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics, as gateway_load.py reports it."""
    import numpy as np

    return float(np.percentile(values, 100 * q)) if values else float("nan")


async def run_replicas(args, db: str) -> dict:
    from unlearnkit.service.temp_postgres import free_port

    token = secrets.token_hex(24)
    auth = {"Authorization": f"Bearer {token}"}
    logs = Path(tempfile.mkdtemp(prefix="gateway-replicas-"))
    replicas = [Replica(i, free_port(), db, args, token, logs) for i in range(args.replicas)]
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.clients + 4 * args.replicas + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.request_timeout), limits=limits) as http:
        try:
            t0 = time.perf_counter()
            for r in replicas:
                r.start()
            starts = await asyncio.gather(*(r.wait_ready(http, args.start_timeout) for r in replicas))
            print(f"{len(replicas)} replicas ready in {time.perf_counter() - t0:.1f} s "
                  f"(each {', '.join(f'{s:.1f}' for s in starts)} s)")
            seed = await http.post(replicas[0].url + "/admin/targets", headers=auth,
                                   json={"targets": [{"name": "Marisol Quentaro"}, {"name": "Tobiah Fenwright"}]})
            seed.raise_for_status()
            seeds = ["Marisol Quentaro", "Tobiah Fenwright"]
            seed_version = seed.json()["version"]
            served = (await http.get(replicas[0].url + "/v1/models")).json()["data"][0]["id"]

            deadline = time.perf_counter() + args.duration
            results: list[tuple[float, object, int, bool, bool]] = []  # latency, status, replica, targeted, refused
            transport = Counter()
            changes: list[dict] = []  # version, acked_at, via
            # per replica: (time, version its registry reports, version its guard enforces)
            seen: dict[int, list[tuple[float, int, int]]] = {r.index: [] for r in replicas}
            finished = asyncio.Event()
            poll_rtt: list[float] = []  # a poll's round trip: how much a delay below may be overstated
            expected = set(seeds)
            live: list[str] = []
            restart = {}
            answered: list[tuple[str, int, bool, bool]] = []  # a 200's response id, replica, targeted, refused

            async def client(i: int):
                local = random.Random(args.seed * 1000 + i)
                home = i % len(replicas)
                while time.perf_counter() < deadline:
                    # the client's own replica, or while it is down the next one up (as a load balancer would)
                    r = next((replicas[(home + j) % len(replicas)] for j in range(len(replicas))
                              if replicas[(home + j) % len(replicas)].up), replicas[home])
                    targeted = local.random() < args.targeted_fraction
                    text = f"Tell me about {local.choice(seeds)}." if targeted else "What is 12 times 7?"
                    t = time.perf_counter()
                    try:
                        resp = await http.post(r.url + "/v1/chat/completions", json={
                            "model": served, "messages": [{"role": "user", "content": text}],
                            "max_tokens": args.max_tokens})
                        body = resp.json() if resp.status_code == 200 else None
                        content = body["choices"][0]["message"]["content"] if body else None
                        refused = content == "I'm sorry, but I can't help with that."
                        results.append((time.perf_counter() - t, resp.status_code, r.index, targeted, refused))
                        if body:
                            answered.append((body["id"], r.index, targeted, refused))
                    except TRANSPORT_ERRORS as exc:
                        transport[type(exc).__name__] += 1
                        await asyncio.sleep(0.05)

            async def admin():
                n, via = 0, 0
                while time.perf_counter() < deadline:
                    await asyncio.sleep(args.change_interval)
                    if time.perf_counter() >= deadline:
                        break
                    for _ in range(len(replicas)):
                        via = (via + 1) % len(replicas)
                        if replicas[via].up:
                            break
                    r = replicas[via]
                    try:
                        if len(live) > 3 and rng.random() < 0.5:
                            name = live.pop(rng.randrange(len(live)))
                            resp = await http.delete(f"{r.url}/admin/targets/{name}", headers=auth)
                            ok = resp.status_code == 200 and resp.json()["removed"] == [name]
                            if ok:
                                expected.discard(name)
                            else:
                                live.append(name)
                        else:
                            name = f"Replica Person {n}"
                            n += 1
                            resp = await http.post(f"{r.url}/admin/targets", headers=auth, json={"name": name})
                            ok = resp.status_code == 201
                            if ok:
                                live.append(name)
                                expected.add(name)
                    except TRANSPORT_ERRORS as exc:
                        transport["admin:" + type(exc).__name__] += 1
                        continue
                    if ok:
                        changes.append({"version": resp.json()["version"], "acked_at": time.perf_counter(), "via": via,
                                        "name": name, "kind": "remove" if resp.request.method == "DELETE" else "add"})
                    else:
                        transport[f"admin:{resp.status_code}"] += 1

            async def watcher(r: Replica):
                while not finished.is_set():
                    if r.up:
                        try:
                            sent = time.perf_counter()
                            resp = await http.get(r.url + "/admin/stats", headers=auth, timeout=5.0)
                            if resp.status_code == 200:
                                st = resp.json()
                                got = time.perf_counter()
                                seen[r.index].append((got, int(st["registry_version"]), int(st["version"] or 0)))
                                poll_rtt.append(got - sent)
                        except TRANSPORT_ERRORS:
                            pass
                    await asyncio.sleep(args.poll_interval)

            async def chaos():
                victim = replicas[-1]
                await asyncio.sleep(args.duration * 0.4)
                victim.kill()
                print(f"killed replica {victim.index} (SIGKILL) at {args.duration * 0.4:.0f} s")
                await asyncio.sleep(args.down_seconds)
                victim.start()
                restart["seconds"] = await victim.wait_ready(http, args.start_timeout)
                print(f"restarted replica {victim.index}: ready in {restart['seconds']:.1f} s")

            timing = {}

            async def clients():
                await asyncio.gather(*(client(i) for i in range(args.clients)))
                timing["clients"] = time.perf_counter() - t_run

            async def load():
                await asyncio.gather(admin(), chaos(), clients())
                await asyncio.sleep(2.0)  # the last change's propagation
                finished.set()

            t_run = time.perf_counter()
            await asyncio.gather(load(), *(watcher(r) for r in replicas))
            elapsed = timing["clients"]

            finals = {}
            for r in replicas:
                data = (await http.get(r.url + "/admin/targets", headers=auth)).json()
                stats = (await http.get(r.url + "/admin/stats", headers=auth)).json()
                finals[r.index] = ({t["name"] for t in data["data"]}, data["version"], stats["version"],
                                   stats.get("registry_unavailable", 0))
            made = [{"version": seed_version, "name": n, "kind": "add"} for n in seeds] + changes
            audit = check_audit(await read_audit(http, replicas[0].url, auth), made, answered)
        except BaseException:
            print(f"the replicas' logs are kept in {logs}")
            raise
        finally:
            for r in replicas:
                r.stop()
    shutil.rmtree(logs, ignore_errors=True)

    # -- figures ----------------------------------------------------------------------------
    statuses = Counter(str(s) for _, s, _, _, _ in results)
    ok_lat = [lat for lat, s, _, _, _ in results if s == 200]
    per_replica = {}
    worst = {"seen": (0.0, None), "enforced": (0.0, None)}
    for r in replicas:
        polls = seen[r.index]
        counts = Counter()
        delays: dict[str, list[float]] = {"seen": [], "enforced": []}
        for ch in changes:
            for kind, col in (("seen", 1), ("enforced", 2)):
                first = next((p[0] for p in polls if p[col] >= ch["version"]), None)
                if first is None:
                    counts[f"{kind}_missed"] += 1
                elif r.was_down(ch["acked_at"]) or any(ch["acked_at"] <= a <= first for a, _ in r.down_periods):
                    counts[f"{kind}_at_restart"] += 1  # made while this replica was down: loaded when it restarted
                else:
                    counts[f"{kind}_live"] += 1
                    delays[kind].append(max(0.0, first - ch["acked_at"]))
        names, version, enforced, unavailable = finals[r.index]
        per_replica[r.index] = {
            **{k: counts[k] for k in ("seen_live", "seen_at_restart", "seen_missed", "enforced_live",
                                      "enforced_at_restart", "enforced_missed")},
            "seen_worst_s": max(delays["seen"], default=float("nan")),
            "enforced_p50_s": percentile(delays["enforced"], 0.5),
            "enforced_worst_s": max(delays["enforced"], default=float("nan")),
            "final_list_matches": names == expected, "final_version": version, "enforced_version": enforced,
            "answered": sum(1 for _, s, i, _, _ in results if i == r.index and s == 200),
            "registry_unavailable_503": unavailable}
        for kind in worst:
            if delays[kind] and max(delays[kind]) > worst[kind][0]:
                worst[kind] = (max(delays[kind]), r.index)
    return {
        "replicas": len(replicas), "clients": args.clients, "seconds": elapsed, "requests": len(results),
        "throughput_rps": len(results) / elapsed if elapsed else 0.0,
        "p50_s": percentile(ok_lat, 0.5), "p95_s": percentile(ok_lat, 0.95),
        "statuses": dict(statuses), "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "transport_errors": dict(transport), "changes_made": len(changes),
        "worst_seen_s": worst["seen"][0], "worst_seen_replica": worst["seen"][1],
        "worst_enforced_s": worst["enforced"][0], "worst_enforced_replica": worst["enforced"][1],
        "restart_ready_s": restart.get("seconds"), "per_replica": per_replica,
        "refused_targeted": sum(1 for _, s, _, t, ref in results if s == 200 and t and ref),
        "targeted": sum(1 for _, s, _, t, _ in results if s == 200 and t),
        "refused_unrelated": sum(1 for _, s, _, t, ref in results if s == 200 and not t and ref),
        "poll_interval_s": args.poll_interval, "poll_rtt_p95_s": percentile(poll_rtt, 0.95),
        "poll_rtt_max_s": max(poll_rtt, default=float("nan")), "audit": audit,
    }


async def read_audit(http: httpx.AsyncClient, url: str, auth: dict) -> list[dict]:
    """The whole audit log of the shared registry, through one replica's admin API, page by page."""
    events: list[dict] = []
    after = 0
    while True:
        resp = await http.get(url + "/admin/audit", headers=auth, params={"after": after, "limit": 10_000})
        resp.raise_for_status()
        page = resp.json()["data"]
        if not page:
            return events
        events.extend(page)
        after = page[-1]["id"]


def check_audit(events: list[dict], changes: list[dict], answered: list[tuple[str, int, bool, bool]]) -> dict:
    """Which acknowledged changes and which guarded 200s have their audit event (see the module's doc)."""
    recorded = {(e["action"], e["target"], e["version"]) for e in events if e["action"].startswith("target.")}
    missing_changes = [c for c in changes
                       if not any((a, c["name"], c["version"]) in recorded for a in
                                  (("target.remove",) if c["kind"] == "remove" else ("target.add", "target.update")))]
    guarded = {e["request_id"] for e in events if e["action"].startswith("guard.") and e.get("request_id")}
    acted = [(rid, replica) for rid, replica, targeted, refused in answered if targeted or refused]
    missing_requests = [(rid, replica) for rid, replica in acted if rid not in guarded]
    expected = len(changes) + len(acted)
    return {"expected": expected, "found": expected - len(missing_changes) - len(missing_requests),
            "changes": len(changes), "missing_changes": missing_changes, "guarded_requests": len(acted),
            "missing_requests": missing_requests, "unguarded_200": len(answered) - len(acted),
            "events": len(events)}


def report(row: dict) -> None:
    print(f"{row['replicas']} replicas, {row['clients']} clients: {row['requests']} requests in {row['seconds']:.1f} s "
          f"= {row['throughput_rps']:.2f} req/s; p50 {row['p50_s'] * 1000:.0f} ms, p95 {row['p95_s'] * 1000:.0f} ms; "
          f"statuses {row['statuses']}; 5xx {row['errors_5xx']}; cut by the kill / failed over "
          f"{row['transport_errors'] or 0}")
    print(f"registry: {row['changes_made']} changes made; worst propagation (goal < 1 s; from the change's "
          f"acknowledgement to the answer of the first poll showing it; poll every {row['poll_interval_s'] * 1000:.0f} "
          f"ms, poll round trip p95 {row['poll_rtt_p95_s'] * 1000:.0f} ms, max {row['poll_rtt_max_s'] * 1000:.0f} ms): seen by a replica's registry "
          f"{row['worst_seen_s'] * 1000:.0f} ms (replica {row['worst_seen_replica']}), enforced by its guard "
          f"{row['worst_enforced_s'] * 1000:.0f} ms (replica {row['worst_enforced_replica']}; a batch already running "
          f"finishes under the list it started with); killed replica ready again in "
          f"{row['restart_ready_s'] or float('nan'):.1f} s; targeted prompts refused {row['refused_targeted']}/"
          f"{row['targeted']}, unrelated refused {row['refused_unrelated']}")
    a = row["audit"]
    verdict = "audit complete" if a["found"] == a["expected"] else "audit INCOMPLETE"
    print(f"{verdict}: {a['found']}/{a['expected']} ({a['changes'] - len(a['missing_changes'])}/{a['changes']} "
          f"target changes, {a['guarded_requests'] - len(a['missing_requests'])}/{a['guarded_requests']} answered "
          f"requests the guard acted on; {a['unguarded_200']} answered requests involved no target and have no guard "
          f"event by design; {a['events']} events read)")
    for c in a["missing_changes"][:20]:
        print(f"  missing: target.{c['kind']} of {c['name']!r} at version {c['version']}")
    for rid, replica in a["missing_requests"][:20]:
        print(f"  missing: the guard event of request {rid} (answered 200 by replica {replica})")
    for i, r in row["per_replica"].items():
        print(f"  replica {i}: of {row['changes_made']} changes seen {r['seen_live']} live + {r['seen_at_restart']} "
              f"at restart (missed {r['seen_missed']}), worst {r['seen_worst_s'] * 1000:.0f} ms; enforced "
              f"{r['enforced_live']} live + {r['enforced_at_restart']} at restart (missed {r['enforced_missed']}), "
              f"p50 {r['enforced_p50_s'] * 1000:.0f} ms, worst {r['enforced_worst_s'] * 1000:.0f} ms; final list "
              f"{'matches' if r['final_list_matches'] else 'DIFFERS'} (version {r['final_version']}, guard at "
              f"{r['enforced_version']}); answered {r['answered']}; 503 registry_unavailable "
              f"{r['registry_unavailable_503']}")
