import json

import pytest

from unlearnkit.data import TaskSplits, generate_benchmark, load_task
from unlearnkit.errors import DataError


def test_tofu_roles_follow_the_forget_split():
    s = TaskSplits.tofu("forget05")
    assert (s.retain, s.holdout, s.forget_eval) == ("retain95", "holdout05", "forget05_perturbed")
    with pytest.raises(DataError, match="forget01, forget05, forget10"):
        TaskSplits.tofu("forget20")


def test_generated_task_loads_with_its_roles(tiny_task):
    assert tiny_task.splits.forget == "forget"
    assert len(tiny_task.forget) == 4 and len(tiny_task.retain) == 8 and len(tiny_task.holdout) == 4
    assert set(tiny_task.general_evals) == {"real_authors_perturbed", "world_facts_perturbed"}


def test_overlap_between_forget_and_retain_is_refused(tmp_path):
    generate_benchmark(tmp_path, n_people=4, n_forget=1, n_holdout=0, facts_per_person=2, n_general=2)
    forget_line = (tmp_path / "forget.jsonl").read_text().splitlines()[0]
    with (tmp_path / "retain.jsonl").open("a") as fh:
        fh.write(forget_line.replace("year was", "year  was").replace("In which", "in which") + "\n")  # spacing and case
    with pytest.raises(DataError, match=r"1 question\(s\) are in both the forget split"):
        load_task(tmp_path)


def test_eval_split_without_perturbed_answers_is_refused(tmp_path):
    generate_benchmark(tmp_path, n_people=4, n_forget=1, n_holdout=0, facts_per_person=2, n_general=2)
    task = json.loads((tmp_path / "task.json").read_text())
    task["forget_eval"] = "forget"  # plain records carry perturbed answers in the generator: strip them
    (tmp_path / "plain.jsonl").write_text('{"question": "Q?", "answer": "A."}\n')
    task["forget_eval"] = "plain"
    (tmp_path / "task.json").write_text(json.dumps(task))
    with pytest.raises(DataError, match="no 'paraphrased_answer'"):
        load_task(tmp_path)


def test_eval_limit_caps_only_eval_splits(tiny_data_dir):
    task = load_task(tiny_data_dir, eval_limit=2)
    assert len(task.retain_eval) == 2 and len(task.forget_eval) == 2
    assert len(task.retain) == 8 and len(task.forget) == 4
