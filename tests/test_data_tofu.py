"""The real TOFU data (../shared/data/tofu): read when present, skipped otherwise."""

import pytest

from conftest import TOFU_DIR
from unlearnkit.data import load_split, load_task

pytestmark = pytest.mark.skipif(not TOFU_DIR.is_dir(), reason=f"TOFU data not found at {TOFU_DIR}")

COUNTS = {"full": 4000, "retain90": 3600, "retain95": 3800, "retain99": 3960, "forget01": 40, "forget05": 200,
          "forget10": 400, "forget01_perturbed": 40, "forget05_perturbed": 200, "forget10_perturbed": 400,
          "retain_perturbed": 400, "holdout01": 40, "holdout05": 200, "holdout10": 400, "real_authors": 100,
          "real_authors_perturbed": 100, "world_facts": 117, "world_facts_perturbed": 117}


@pytest.mark.parametrize("split,count", COUNTS.items())
def test_every_split_has_the_documented_count(split, count):
    assert len(load_split(TOFU_DIR, split)) == count


def test_perturbed_splits_carry_truth_ratio_fields():
    for r in load_split(TOFU_DIR, "forget10_perturbed"):
        assert len(r.perturbed_answers) == 5 and r.paraphrased_answer and r.paraphrased_question
    assert all(r.perturbed_answers for r in load_split(TOFU_DIR, "world_facts_perturbed"))


def test_full_is_retain90_then_forget10():
    full = load_split(TOFU_DIR, "full")
    assert [r.question for r in full[:3600]] == [r.question for r in load_split(TOFU_DIR, "retain90")]
    assert [r.question for r in full[3600:]] == [r.question for r in load_split(TOFU_DIR, "forget10")]


def test_tofu_task_loads():
    task = load_task(TOFU_DIR, forget="forget01")
    assert (len(task.forget), len(task.retain), len(task.holdout)) == (40, 3960, 40)
