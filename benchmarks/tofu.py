"""The TOFU benchmark table: every method on real TOFU, settings chosen by the declared rule, phase times.

    python benchmarks/tofu.py --data ../shared/data/tofu --out runs/tofu                 # forget01, CPU layout
    python benchmarks/tofu.py --data ../shared/data/tofu --layout whole --forget forget10  # the whole of TOFU

The same as ``unlearnkit tofu`` (every option of that command works here); it prints the comparison table on
the final suite and the wall time of each phase (fine-tuning, reference evaluations, each method's sweep and
final evaluation), and writes results.json, results.md and report.html. Everything finished is reused on the
next call, so an interrupted run continues where it stopped and a second run only re-reads the caches.
"""

from __future__ import annotations

import sys

from unlearnkit.cli import app

if __name__ == "__main__":
    app(["tofu", *sys.argv[1:]])
