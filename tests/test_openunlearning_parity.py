"""Parity with OpenUnlearning's TOFU evaluation, on its own output (../shared/reference).

The reference holds OpenUnlearning's per-example values for the untuned SmolLM2 on forget01.
Skipped where that folder is absent.
"""

import json
from pathlib import Path

import numpy as np
import pytest

REF_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "openunlearning-tofu-forget01"
TOFU = Path(__file__).resolve().parents[2] / "shared" / "data" / "tofu"
REF = REF_DIR / "TOFU_EVAL.json.gz"

pytestmark = pytest.mark.skipif(not REF.is_file() or not TOFU.is_dir(),
                                reason="OpenUnlearning reference or TOFU data not present (../shared)")


@pytest.fixture(scope="module")
def ou():
    from unlearnkit.evaluation.openunlearning import load_eval

    return load_eval(REF)


def _records(split):
    return [json.loads(line) for line in (TOFU / f"{split}.jsonl").read_text().splitlines() if line.strip()]


def test_metric_definitions_reproduce_openunlearning_from_its_inputs(ou):
    from unlearnkit.evaluation.openunlearning import metric_parity

    gaps = metric_parity(ou)
    expected = {f"{p}_{m}" for p in ("forget", "retain", "ra", "wf") for m in ("truth_ratio", "truth_ratio_agg", "rouge")}
    expected |= {"ra_prob_normalised", "wf_prob_normalised", "model_utility", "mia_min_k_auc", "privleak"}
    assert expected <= set(gaps)
    for name, gap in gaps.items():
        assert gap < 1e-6, f"{name}: relative gap {gap:.2e}"
    summary = json.loads((REF_DIR / "TOFU_SUMMARY.json").read_text())
    assert round(summary["model_utility"], 4) == 0.2405


@pytest.mark.integration
def test_labels_have_openunlearnings_length(ou):
    """Extraction strength is k/(|labels| − 1) for an integer k: our label count is OpenUnlearning's."""
    from unlearnkit.models import load_model

    lm = load_model()
    for i, r in enumerate(_records("forget01_perturbed")):
        _, labels = lm.pair_ids(r["question"], r["answer"])
        es = ou["extraction_strength"]["value_by_index"][str(i)]["score"]
        k = es * (len(labels) - 1)
        assert abs(k - round(k)) < 1e-6 and round(k) >= 1, f"record {i}: ES {es} with {len(labels)} labels"


@pytest.mark.integration
def test_rouge_reference_is_openunlearnings_ground_truth(ou):
    from unlearnkit.models import load_model

    lm = load_model()
    for split, key in (("forget01_perturbed", "forget"), ("real_authors_perturbed", "ra"),
                       ("world_facts_perturbed", "wf")):
        for i, r in enumerate(_records(split)):
            _, labels = lm.pair_ids(r["question"], r["answer"])
            gold = ou[f"{key}_Q_A_ROUGE"]["value_by_index"][str(i)]["ground_truth"]
            assert lm.label_text(labels).strip() == gold, f"{split} record {i}"


@pytest.mark.integration
@pytest.mark.xfail(strict=True, reason=(
    "the shared reference's model outputs differ from the embedded SmolLM2's although labels, prompts and "
    "metric definitions agree (see docs/openunlearning-parity.md); strict: passes once the reference is "
    "regenerated on this model"))
def test_per_example_forget_probabilities_equal_openunlearnings(ou):
    from unlearnkit.models import load_model

    lm = load_model()
    records = _records("forget01_perturbed")
    scores = lm.score([r["question"] for r in records], [r["answer"] for r in records])
    gold = np.array([ou["forget_Q_A_Prob"]["value_by_index"][str(i)]["prob"] for i in range(len(records))])
    rel = np.abs(np.array([s.prob for s in scores]) - gold) / gold
    assert rel.max() <= 1e-4, f"largest relative gap {rel.max():.2e}, median {np.median(rel):.2e}"
