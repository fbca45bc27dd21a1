import pytest

from unlearnkit.data import builtin_benchmark_dir, generate_benchmark, load_split, load_task
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
