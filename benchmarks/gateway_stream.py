"""Time to first token of the gateway's streaming, against the decode step and the hold-back window.

Starts the gateway in process on a free loopback port (the embedded SmolLM2 by default, the prompting
guard, a few registered targets so the hold-back has names and facts to watch), waits for the background
verification of those targets to finish (it would otherwise hold some requests behind a batch of probes),
then sends ``--requests`` streamed chat requests one after another (each alone, so nothing queues) and
records, per request:

* TTFT: from sending the request to the first chunk with text, as the client sees it;
* before the model: from sending the request to the model's generate call (HTTP, the prompt filter and its
  reference detection, token counting, the guard's system prompt);
* prefill: from the generate call to the model's first generated token (the prompt's forward; with the
  prefix cache only the part the prompt does not share with the previous one);
* first token: the two above together;
* decode step: the median time between two tokens of that answer;
* window: the tokens generated after the first one before the first chunk was released (the growing
  first word and anything that could still be the start of a protected string);
* expected TTFT = first token + window x decode step; and the whole answer's time, which was the time
  to first token before streaming was real.

It prints medians (TTFT also at p95), the prefix cache's counters, and whether the goal holds: median
TTFT <= 2 x decode step + median window x decode step (the first token within two decode steps).

    python benchmarks/gateway_stream.py                      # SmolLM2, 20 requests of up to 64 tokens
    python benchmarks/gateway_stream.py --no-prefix-cache    # the same without reusing the guard's prefix
    python benchmarks/gateway_stream.py --requests 50 --max-tokens 128 --guard none
    python benchmarks/gateway_stream.py --model tiny --requests 3     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from unlearnkit.models.base import LanguageModel
from unlearnkit.models.loading import load_model
from unlearnkit.service import ServeSettings, start_background_server

QUESTIONS = [
    "Name three rivers in Europe.",
    "What is the capital of France?",
    "Give me one tip for writing clear emails.",
    "Why is the sky blue?",
    "How do plants make food?",
    "Write a haiku about autumn.",
    "What does a CPU do?",
    "Suggest a name for a pet goldfish.",
    "How many days are in a leap year?",
    "Explain what a noun is.",
]
TARGETS = [
    {"name": "Marisol Quentaro", "aliases": ["M. Quentaro"], "facts": ["Marisol Quentaro was born in Lisbon in 1961."]},
    {"name": "Basil Mahfouz Al-Kuwaiti", "aliases": ["Basil Al-Kuwaiti"],
     "facts": ["Basil Mahfouz Al-Kuwaiti was born in Kuwait City."]},
    {"name": "Jorund Halvsen", "facts": ["The first novel of Jorund Halvsen was printed in Bergen."]},
]


class TokenClock(LanguageModel):
    """The served model, unchanged, with the time of each progress report of its answers (one per token
    on a transformers model) kept for the benchmark."""

    def __init__(self, base: LanguageModel):
        self.base = base
        self.name = base.name
        self.streams = base.streams
        self.ticks: list[float] = []
        self.calls: list[float] = []  # when each stream_generate began
        self._lock = threading.Lock()

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - the gateway never scores
        return self.base.score(prompts, answers, **kwargs)

    def generate(self, prompts, **kwargs):
        return self.base.generate(prompts, **kwargs)

    def stream_generate(self, prompts, *, on_text, **kwargs):
        with self._lock:
            self.calls.append(time.perf_counter())

        def timed(i, text):
            with self._lock:
                self.ticks.append(time.perf_counter())
            on_text(i, text)

        return self.base.stream_generate(prompts, on_text=timed, **kwargs)

    def take(self) -> tuple[list[float], list[float]]:
        """(generate calls, token reports) since the last take."""
        with self._lock:
            out, self.ticks = self.ticks, []
            calls, self.calls = self.calls, []
        return calls, out

    def enable_prefix_cache(self, *args, **kwargs):  # the gateway asks the model that holds the weights
        enable = getattr(self.base, "enable_prefix_cache", None)
        return enable(*args, **kwargs) if callable(enable) else None


def one_request(url: str, model: str, question: str, max_tokens: int) -> dict:
    payload = {"model": model, "stream": True, "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": question}]}
    t0 = time.perf_counter()
    first, text, chunks = None, "", 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            piece = event["choices"][0]["delta"].get("content") if event.get("choices") else None
            if piece:
                chunks += 1
                text += piece
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return {"t0": t0, "first": first if first is not None else end, "end": end, "text": text, "chunks": chunks}


def measure(row: dict, calls: list[float], ticks: list[float]) -> dict | None:
    if len(ticks) < 2 or not calls:
        return None
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    step = statistics.median(steps)
    first_token = ticks[0] - row["t0"]
    window = max(0, sum(1 for t in ticks if t <= row["first"]) - 1)
    return {"ttft": row["first"] - row["t0"], "first_token": first_token, "before_model": calls[0] - row["t0"],
            "prefill": ticks[0] - calls[0], "step": step, "window": window,
            "expected": first_token + window * step, "whole": row["end"] - row["t0"], "chunks": row["chunks"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model spec for load_model (default: the embedded SmolLM2)")
    ap.add_argument("--guard", default="prompt", help="guard in front of the model (prompt | none | eco | alu)")
    ap.add_argument("--requests", type=int, default=20, help="streamed requests, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prefix-cache", action=argparse.BooleanOptionalAction, default=True,
                    help="reuse the keys and values of the prompt start requests share (the guard's instruction)")
    ap.add_argument("--verify-timeout", type=float, default=600.0,
                    help="seconds to wait for the targets' background verification before measuring")
    args = ap.parse_args(argv)

    clock = TokenClock(load_model(args.model))
    admin = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServeSettings(guard=args.guard, db_path=Path(tmp) / "registry.db", admin_token=admin,
                                 log_level="warning", max_tokens_limit=max(args.max_tokens, 64),
                                 prefix_cache=args.prefix_cache)
        handle = start_background_server(settings, clock)
        try:
            served = httpx.get(handle.url + "/v1/models").json()["data"][0]["id"]
            auth = {"Authorization": f"Bearer {admin}"}
            httpx.post(handle.url + "/admin/targets", json={"targets": TARGETS}, headers=auth).raise_for_status()
            waited = wait_for_verification(handle.url, auth, len(TARGETS), args.verify_timeout)
            one_request(handle.url, served, "Hello.", 8)  # warm-up
            clock.take()
            rows = []
            for k in range(args.requests):
                row = one_request(handle.url, served, QUESTIONS[k % len(QUESTIONS)], args.max_tokens)
                m = measure(row, *clock.take())
                if m is not None:
                    rows.append(m)
            cache = httpx.get(handle.url + "/admin/stats", headers=auth).json().get("prefix_cache", "off")
        finally:
            handle.stop()

    print(f"model {clock.name} | guard {args.guard} | streams: {clock.streams} | {len(rows)} of {args.requests} "
          f"requests with 2+ tokens | max_tokens {args.max_tokens} | verification before measuring: {waited}")
    print(f"  prefix cache: {cache}")
    if not rows:
        print("no answer was reported token by token (a guard that answers once it has decided?): nothing to measure")
        return

    def med(key):
        return statistics.median(r[key] for r in rows)

    ttft = sorted(r["ttft"] for r in rows)
    p95 = float(np.percentile(ttft, 95))
    step, window = med("step"), med("window")
    goal = (2 + window) * step
    print(f"  decode step (median)                       {step * 1000:9.1f} ms")
    print(f"  before the model (HTTP, prompt filter)     {med('before_model') * 1000:9.1f} ms")
    print(f"  prefill (generate call to first token)     {med('prefill') * 1000:9.1f} ms")
    print(f"  first token (the two above)                {med('first_token') * 1000:9.1f} ms")
    print(f"  window (tokens held after the 1st)         {window:9.1f}")
    print(f"  TTFT (client) median                       {med('ttft') * 1000:9.1f} ms")
    print(f"  TTFT (client) p95                          {p95 * 1000:9.1f} ms")
    print(f"  first token + window x step (median)       {med('expected') * 1000:9.1f} ms")
    print(f"  whole answer (the old TTFT)                {med('whole') * 1000:9.1f} ms")
    print(f"  chunks with text per answer                {med('chunks'):9.1f}")
    verdict = "holds" if med("ttft") <= goal else "does NOT hold"
    print(f"goal: median TTFT <= 2 x step + window x step = {goal * 1000:.1f} ms: {verdict} "
          f"(median TTFT {med('ttft') * 1000:.1f} ms)")


def wait_for_verification(url: str, auth: dict, targets: int, timeout: float) -> str:
    """Wait until the audit log holds a ``target.verified`` event per target (the gateway probes each new
    target in the background; a request arriving meanwhile may wait for a batch of probes)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        events = httpx.get(url + "/admin/audit", headers=auth, params={"action": "target.verified", "limit": 1000})
        events.raise_for_status()
        if len(events.json()["data"]) >= targets:
            return f"done in {time.perf_counter() - t0:.1f} s"
        time.sleep(0.5)
    return f"NOT finished after {timeout:g} s (some requests may have waited behind probes)"


if __name__ == "__main__":
    main()
