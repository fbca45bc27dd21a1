"""Shared fixtures: a tiny random Llama and a small generated benchmark (seconds, no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOFU_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


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
def _isolated_cache(tmp_path, monkeypatch):
    """Keep every test's cache writes out of the user's home."""
    if "UNLEARNKIT_TEST_SHARED_CACHE" not in os.environ:
        monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))


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
