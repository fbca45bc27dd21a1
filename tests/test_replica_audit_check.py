"""The replica benchmark's audit check finds every missing event and only those (benchmarks/gateway_replicas.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gateway_replicas.py"


def _check_audit():
    spec = importlib.util.spec_from_file_location("gateway_replicas", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_audit


EVENTS = [
    {"id": 1, "action": "target.add", "target": "A", "version": 1, "request_id": None},
    {"id": 2, "action": "target.update", "target": "B", "version": 2, "request_id": None},
    {"id": 3, "action": "guard.refused_prompt", "target": "A", "version": 2, "request_id": "chatcmpl-1"},
    {"id": 4, "action": "target.remove", "target": "A", "version": 3, "request_id": None},
    {"id": 5, "action": "guard.filtered_output", "target": "B", "version": 3, "request_id": "chatcmpl-2"},
]
CHANGES = [{"name": "A", "version": 1, "kind": "add"}, {"name": "B", "version": 2, "kind": "add"},
           {"name": "A", "version": 3, "kind": "remove"}]
ANSWERED = [("chatcmpl-1", 0, True, True), ("chatcmpl-2", 1, False, True), ("chatcmpl-3", 2, False, False)]


def test_a_complete_trail_counts_changes_and_guarded_requests():
    result = _check_audit()(EVENTS, CHANGES, ANSWERED)
    assert (result["found"], result["expected"]) == (5, 5)
    assert result["unguarded_200"] == 1 and not result["missing_changes"] and not result["missing_requests"]


def test_missing_events_are_named():
    check = _check_audit()
    without = [e for e in EVENTS if e["id"] not in (4, 5)]
    result = check(without, CHANGES, ANSWERED)
    assert (result["found"], result["expected"]) == (3, 5)
    assert result["missing_changes"] == [CHANGES[2]] and result["missing_requests"] == [("chatcmpl-2", 1)]
    wrong_version = [dict(e, version=9) if e["id"] == 1 else e for e in EVENTS]  # the event of another change
    assert check(wrong_version, CHANGES, ANSWERED)["missing_changes"] == [CHANGES[0]]
    removed_as_added = [dict(e, action="target.add") if e["id"] == 4 else e for e in EVENTS]
    assert check(removed_as_added, CHANGES, ANSWERED)["missing_changes"] == [CHANGES[2]]
