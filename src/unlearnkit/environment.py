"""What a result depends on beyond its seed: library versions and the CPU threads torch uses.

Runs with the same command and seed give the same numbers with the same versions and thread count. A
different thread count changes the order of float reductions: weights then differ at about 1e-5 relative,
and a greedy generation that was a close call can flip. Every benchmark records this beside its figures.
"""

from __future__ import annotations

import platform


def environment() -> dict:
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "cuda": torch.cuda.is_available()}
