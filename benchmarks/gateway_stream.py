"""Time to first token of the gateway's streaming, against one decode step plus the hold-back window.

Starts the gateway in process on a free loopback port (the embedded SmolLM2 by default, the prompting
guard, a few registered targets so the hold-back has names and facts to watch), then sends
``--requests`` streamed chat requests one after another (each alone, so nothing queues) and records,
per request:

* TTFT: from sending the request to the first chunk with text, as the client sees it;
* first token: from sending the request to the model's first generated token (prefill + one decode
  step, plus the gateway's own overhead), timed inside the process where the model reports tokens;
* decode step: the median time between two tokens of that answer;
* window: the tokens generated after the first one before the first chunk was released (the growing
  first word and anything that could still be the start of a protected string);
* expected TTFT = first token + window x decode step; and the whole answer's time, which was the time
  to first token before streaming was real.

It prints the medians over the requests:

    python benchmarks/gateway_stream.py                      # SmolLM2, 20 requests of up to 64 tokens
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
        self._lock = threading.Lock()

    def score(self, prompts, answers, **kwargs):  # pragma: no cover - the gateway never scores
        return self.base.score(prompts, answers, **kwargs)

    def generate(self, prompts, **kwargs):
        return self.base.generate(prompts, **kwargs)

    def stream_generate(self, prompts, *, on_text, **kwargs):
        def timed(i, text):
            with self._lock:
                self.ticks.append(time.perf_counter())
            on_text(i, text)

        return self.base.stream_generate(prompts, on_text=timed, **kwargs)

    def take(self) -> list[float]:
        with self._lock:
            out, self.ticks = self.ticks, []
        return out


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


def measure(row: dict, ticks: list[float]) -> dict | None:
    if len(ticks) < 2:
        return None
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    step = statistics.median(steps)
    first_token = ticks[0] - row["t0"]
    window = max(0, sum(1 for t in ticks if t <= row["first"]) - 1)
    return {"ttft": row["first"] - row["t0"], "first_token": first_token, "step": step, "window": window,
            "expected": first_token + window * step, "whole": row["end"] - row["t0"], "chunks": row["chunks"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model spec for load_model (default: the embedded SmolLM2)")
    ap.add_argument("--guard", default="prompt", help="guard in front of the model (prompt | none | eco | alu)")
    ap.add_argument("--requests", type=int, default=20, help="streamed requests, one after another")
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args(argv)

    clock = TokenClock(load_model(args.model))
    admin = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServeSettings(guard=args.guard, db_path=Path(tmp) / "registry.db", admin_token=admin,
                                 log_level="warning", max_tokens_limit=max(args.max_tokens, 64))
        handle = start_background_server(settings, clock)
        try:
            served = httpx.get(handle.url + "/v1/models").json()["data"][0]["id"]
            httpx.post(handle.url + "/admin/targets", json={"targets": TARGETS},
                       headers={"Authorization": f"Bearer {admin}"}).raise_for_status()
            one_request(handle.url, served, "Hello.", 8)  # warm-up
            clock.take()
            rows = []
            for k in range(args.requests):
                row = one_request(handle.url, served, QUESTIONS[k % len(QUESTIONS)], args.max_tokens)
                m = measure(row, clock.take())
                if m is not None:
                    rows.append(m)
        finally:
            handle.stop()

    print(f"model {clock.name} | guard {args.guard} | streams: {clock.streams} | {len(rows)} of {args.requests} "
          f"requests with 2+ tokens | max_tokens {args.max_tokens}")
    if not rows:
        print("no answer was reported token by token (a guard that answers once it has decided?): nothing to measure")
        return

    def med(key):
        return statistics.median(r[key] for r in rows)

    print(f"  median time to first token (client)        {med('ttft') * 1000:9.1f} ms")
    print(f"  median first token (prefill + 1 step)      {med('first_token') * 1000:9.1f} ms")
    print(f"  median decode step                         {med('step') * 1000:9.1f} ms")
    print(f"  median window (tokens held after the 1st)  {med('window'):9.1f}")
    print(f"  median first token + window x step         {med('expected') * 1000:9.1f} ms")
    print(f"  median whole answer (the old TTFT)         {med('whole') * 1000:9.1f} ms")
    print(f"  median chunks with text per answer         {med('chunks'):9.1f}")


if __name__ == "__main__":
    main()
