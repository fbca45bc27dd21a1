import json
from pathlib import Path

import pytest

from unlearnkit.data import TaskSplits, generate_benchmark, load_task
from unlearnkit.errors import ConfigError, DataError


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


# -- roles from task.json / TOFU defaults --------------------------------------------------------
TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"


def _small(tmp_path, **kw):
    args = {"n_people": 4, "n_forget": 1, "n_holdout": 1, "facts_per_person": 2, "n_general": 2, **kw}
    generate_benchmark(tmp_path, **args)
    return json.loads((tmp_path / "task.json").read_text())


def _edit_task(tmp_path, **changes):
    task = json.loads((tmp_path / "task.json").read_text())
    task.update(changes)
    (tmp_path / "task.json").write_text(json.dumps(task))


def test_from_dir_defaults_to_tofu_and_forget_overrides(tmp_path):
    assert TaskSplits.from_dir(tmp_path) == TaskSplits()
    assert TaskSplits.from_dir(tmp_path, forget="forget01") == TaskSplits.tofu("forget01")
    assert TaskSplits.tofu("forget01").retain == "retain99"
    with pytest.raises(DataError, match=r"forget split 'mine' is not a TOFU forget split.*task.json"):
        TaskSplits.from_dir(tmp_path, forget="mine")
    _small(tmp_path)
    s = TaskSplits.from_dir(tmp_path, forget="retain")
    assert (s.forget, s.retain, s.general_evals) == ("retain", "retain", ("real_authors_perturbed",
                                                                          "world_facts_perturbed"))


@pytest.mark.parametrize("content,match", [
    ('{"foget": "x"}', r"unknown key\(s\) foget"),
    ('{"forget": 3}', r"'forget' must be a split name"),
    ('{"general_evals": [1]}', r"'general_evals' must be a list of split names"),
    ('[1, 2]', "must hold a JSON object"),
    ('{oops', "is not valid JSON"),
])
def test_bad_task_json(tmp_path, content, match):
    (tmp_path / "task.json").write_text(content)
    with pytest.raises(DataError, match=match) as info:
        TaskSplits.from_dir(tmp_path)
    assert "task.json" in str(info.value)


def test_task_json_allows_null_holdout_and_full(tmp_path):
    (tmp_path / "task.json").write_text('{"forget": "f", "holdout": null, "full": null, "general_evals": []}')
    assert TaskSplits.from_dir(tmp_path) == TaskSplits(forget="f", holdout=None, full=None, general_evals=())


# -- load_task validation ------------------------------------------------------------------------
def test_empty_forget_set_is_refused_with_the_fix(tmp_path):
    _small(tmp_path)
    (tmp_path / "forget.jsonl").write_text("")
    with pytest.raises(DataError, match=r"forget split 'forget' in .* has 0 records: the forget set must not be "
                                        r"empty; pick another split with --forget"):
        load_task(tmp_path)


def test_empty_retain_set_is_refused(tmp_path):
    _small(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"retain split 'empty' .* has 0 records.*--retain"):
        load_task(tmp_path, retain="empty")


def test_missing_role_split_names_role_and_available_splits(tmp_path):
    _small(tmp_path)
    with pytest.raises(DataError, match=r"retain split 'retain99' not found .*available splits are forget, "
                                        r"forget_perturbed, full, holdout.*--retain"):
        load_task(tmp_path, retain="retain99")
    (tmp_path / "holdout.jsonl").unlink()
    with pytest.raises(DataError, match=r"holdout split 'holdout' not found.*\"holdout\": null"):
        load_task(tmp_path)
    _edit_task(tmp_path, holdout=None)
    assert load_task(tmp_path).holdout == []


def test_no_holdout_people_gives_an_empty_holdout(tmp_path):
    task = _small(tmp_path, n_holdout=0)
    assert task["holdout"] is None and not (tmp_path / "holdout.jsonl").exists()
    assert load_task(tmp_path).holdout == []


def test_retain_override(tmp_path):
    _small(tmp_path)
    assert load_task(tmp_path, retain="holdout").retain == load_task(tmp_path).holdout


def test_overlap_message_shows_count_and_example(tmp_path):
    _small(tmp_path)
    with pytest.raises(DataError, match=r"(\d+) question\(s\) are in both.*\(e.g. '.*\?'\): remove them from one"):
        load_task(tmp_path, retain="full")


def test_general_eval_without_perturbed_answers_is_refused(tmp_path):
    _small(tmp_path)
    (tmp_path / "facts.jsonl").write_text('{"question": "Q?", "answer": "A.", "perturbed_answer": ["B."]}\n'
                                          '{"question": "R?", "answer": "S."}\n')
    _edit_task(tmp_path, general_evals=["facts"])
    with pytest.raises(DataError, match=r"general_evals split 'facts': 1 of 2 records have no 'perturbed_answer' "
                                        r"\(first: record 1"):
        load_task(tmp_path)
    assert len(load_task(tmp_path, eval_limit=1).general_evals["facts"]) == 1  # the bad record is cut off


def test_forget_eval_without_perturbed_answers_is_refused(tmp_path):
    _small(tmp_path)
    (tmp_path / "fe.jsonl").write_text('{"question": "Q?", "answer": "A.", "paraphrased_answer": "B."}\n')
    _edit_task(tmp_path, forget_eval="fe")
    with pytest.raises(DataError, match=r"forget_eval split 'fe'.*no 'perturbed_answer'.*_perturbed split"):
        load_task(tmp_path)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_eval_limit(tiny_data_dir, bad):
    with pytest.raises(ConfigError, match="eval_limit must be"):
        load_task(tiny_data_dir, eval_limit=bad)


def test_eval_limit_is_deterministic_first_n(tiny_data_dir, tiny_task):
    task = load_task(tiny_data_dir, eval_limit=3)
    assert task.forget_eval == tiny_task.forget_eval[:3]
    assert all(v == tiny_task.general_evals[k][:3] for k, v in task.general_evals.items())
    assert task.holdout == tiny_task.holdout


def test_missing_data_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope' does not exist"):
        load_task(tmp_path / "nope")


def test_tofu_task_forget01():
    if not (TOFU / "full.jsonl").is_file():
        pytest.skip(f"the real TOFU data is not at {TOFU}")
    task = load_task(TOFU, forget="forget01", eval_limit=10)
    assert task.splits == TaskSplits.tofu("forget01")
    assert (len(task.forget), len(task.retain), len(task.holdout)) == (40, 3960, 40)
    assert len(task.forget_eval) == 10 and set(task.general_evals) == {"real_authors_perturbed",
                                                                       "world_facts_perturbed"}
