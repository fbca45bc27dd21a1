import json
import time

import pytest

from unlearnkit.data import builtin_benchmark_dir, generate_benchmark, load_split, load_task
from unlearnkit.data.synthetic import MAX_GENERAL
from unlearnkit.data.synthetic_facts import ATTRIBUTE_ORDER, REAL_AUTHORS, TEMPLATES, WORLD_FACTS
from unlearnkit.errors import ConfigError


def _bytes(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_same_seed_same_bytes_other_seed_other_people(tmp_path):
    generate_benchmark(tmp_path / "a", seed=3)
    generate_benchmark(tmp_path / "b", seed=3)
    generate_benchmark(tmp_path / "c", seed=4)
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert _bytes(tmp_path / "a")["forget.jsonl"] != _bytes(tmp_path / "c")["forget.jsonl"]


def test_records_have_every_tofu_field_and_distinct_perturbations(tiny_task):
    for r in tiny_task.forget_eval + tiny_task.retain_eval:
        assert r.paraphrased_answer and r.paraphrased_question and r.subject
        assert len(r.perturbed_answers) == 5 and len(set(r.perturbed_answers)) == 5
        assert r.answer not in r.perturbed_answers
        assert r.keywords[0] in r.answer and all(r.keywords[0] not in p for p in r.perturbed_answers)


def test_people_are_disjoint_across_forget_retain_holdout(tiny_task):
    forget = {r.subject for r in tiny_task.forget}
    retain = {r.subject for r in tiny_task.retain}
    holdout = {r.subject for r in tiny_task.holdout}
    assert len(forget) == 2 and len(retain) == 4 and len(holdout) == 2
    assert not (forget & retain or forget & holdout or retain & holdout)


def test_full_is_retain_then_forget(tiny_data_dir, tiny_task):
    full = load_split(tiny_data_dir, "full")
    assert [r.question for r in full] == [r.question for r in tiny_task.retain + tiny_task.forget]


def test_a_thousand_people(tmp_path):
    generate_benchmark(tmp_path, n_people=1000, n_forget=10, n_holdout=0, facts_per_person=1, n_general=2)
    task = load_task(tmp_path)
    assert len({r.subject for r in task.retain + task.forget}) == 1000


@pytest.mark.parametrize("kwargs,match", [
    ({"n_people": 3, "n_forget": 3}, "n_forget must be between"),
    ({"facts_per_person": 9}, "facts_per_person must be between 1 and 8"),
    ({"n_people": 5000}, "at most"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        generate_benchmark(tmp_path / "x", **kwargs)


def test_builtin_dir_is_generated_once(tmp_path):
    a = builtin_benchmark_dir(n_people=5, n_forget=1)
    stamp = (a / "forget.jsonl").stat().st_mtime_ns
    assert builtin_benchmark_dir(n_people=5, n_forget=1) == a
    assert (a / "forget.jsonl").stat().st_mtime_ns == stamp


# -- content of the facts ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "b"
    generate_benchmark(root, n_people=60, n_forget=10, n_holdout=10, facts_per_person=8, seed=7, n_general=MAX_GENERAL)
    return root


def test_every_fact_is_consistent(big):
    task = load_task(big)
    people = task.retain + task.forget + task.holdout
    assert len(people) == 70 * 8 and len(ATTRIBUTE_ORDER) >= 8
    for r in people:
        value = r.keywords[0]
        assert r.keywords == (value,) and r.meta["value"] == value
        assert value in r.answer and value in r.paraphrased_answer and r.subject in r.answer
        assert value.lower() not in r.question.lower() and value.lower() not in r.subject.lower()
        assert r.question != r.paraphrased_question and r.answer != r.paraphrased_answer
        assert len(set(r.perturbed_answers)) == 5 and r.answer not in r.perturbed_answers
        assert all(value not in p for p in r.perturbed_answers)
        # like TOFU, perturbed answers are the paraphrased answer with another value
        before, after = r.paraphrased_answer.split(value)
        before = before.removesuffix(" an ").removesuffix(" a ")  # the article follows the value
        assert all(p.startswith(before) and p.endswith(after) for p in r.perturbed_answers)
        assert " a a" not in r.answer and " a e" not in r.answer  # the article fits the value


def test_general_sets_are_real_short_facts(big):
    assert len(REAL_AUTHORS) >= 25 and len(WORLD_FACTS) >= 25
    task = load_task(big)
    for name, records in task.general_evals.items():
        assert len(records) == MAX_GENERAL
        assert len({r.question for r in records}) == len(records), name
        for r in records:
            assert len(r.perturbed_answers) == 3 and len(set(r.perturbed_answers)) == 3
            assert all(r.answer.lower() not in p.lower() for p in r.perturbed_answers)
    assert task.general_evals["world_facts_perturbed"][0].answer == "Paris"


def test_splits_sizes_order_and_task_json(tmp_path):
    splits = generate_benchmark(tmp_path, n_people=7, n_forget=3, n_holdout=2, facts_per_person=3, seed=1, n_general=5)
    count = {p.stem: len(p.read_text().splitlines()) for p in tmp_path.glob("*.jsonl")}
    assert count == {"full": 21, "retain": 12, "forget": 9, "holdout": 6, "retain_perturbed": 12,
                     "forget_perturbed": 9, "real_authors_perturbed": 5, "world_facts_perturbed": 5}
    assert (tmp_path / "forget.jsonl").read_text() == (tmp_path / "forget_perturbed.jsonl").read_text()
    task = json.loads((tmp_path / "task.json").read_text())
    assert task == {"forget": "forget", "retain": "retain", "holdout": "holdout", "forget_eval": "forget_perturbed",
                    "retain_eval": "retain_perturbed", "general_evals": ["real_authors_perturbed",
                                                                         "world_facts_perturbed"],
                    "full": "full", "generator": {**task["generator"], "n_people": 7, "n_forget": 3, "n_holdout": 2,
                                                  "facts_per_person": 3, "seed": 1, "n_general": 5}}
    assert splits.forget == "forget" and splits.general_evals == ("real_authors_perturbed", "world_facts_perturbed")


def test_templates_are_keyed_by_language():
    assert "en" in TEMPLATES and set(TEMPLATES["en"]) == set(ATTRIBUTE_ORDER)
    for t in TEMPLATES["en"].values():
        assert len(t["q"]) == 2 and len(t["a"]) == 2 and all("{value}" in a for a in t["a"])


def test_a_thousand_people_is_fast(tmp_path):
    start = time.perf_counter()
    generate_benchmark(tmp_path, n_people=1000, n_forget=100, n_holdout=50)
    assert time.perf_counter() - start < 5  # about 0.3 s; generous for shared CI machines
    subjects = [json.loads(line)["subject"] for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert len(set(subjects)) == 1000 and len(subjects) == 4000


# -- writing -------------------------------------------------------------------------------------
def test_regenerating_replaces_an_earlier_benchmark_and_leaves_no_temp_dirs(tmp_path):
    generate_benchmark(tmp_path / "b", seed=1)
    generate_benchmark(tmp_path / "b", seed=2, n_holdout=0)
    assert not (tmp_path / "b" / "holdout.jsonl").exists()
    assert json.loads((tmp_path / "b" / "task.json").read_text())["generator"]["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_refuses_to_replace_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a generated benchmark"):
        generate_benchmark(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="is a file"):
        generate_benchmark(tmp_path / "notes.txt")


@pytest.mark.parametrize("kwargs,match", [
    ({"n_forget": 0}, "n_forget must be between 1 and n_people - 1"),
    ({"n_holdout": -1}, "n_holdout must be >= 0"),
    ({"facts_per_person": 0}, "facts_per_person must be between 1 and 8"),
    ({"n_general": 0}, "n_general must be between 1 and"),
    ({"n_general": 10_000}, "n_general must be between 1 and"),
    ({"n_people": 10.0}, "n_people must be a whole number"),
    ({"seed": True}, "seed must be a whole number"),
    ({"n_people": 1, "n_forget": 1}, "n_people must be at least 2"),
])
def test_more_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        generate_benchmark(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_builtin_dir_lives_in_the_cache_and_depends_on_the_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "c"))
    a = builtin_benchmark_dir(n_people=5, n_forget=1, seed=1)
    b = builtin_benchmark_dir(n_people=5, n_forget=1, seed=2)
    assert a != b and a.parent == tmp_path / "c" / "benchmarks"
    assert builtin_benchmark_dir() == builtin_benchmark_dir(n_people=10, n_forget=2)  # defaults are part of the key
    assert load_task(a).splits.forget == "forget"
    with pytest.raises(ConfigError, match="unknown benchmark argument"):
        builtin_benchmark_dir(people=5)
