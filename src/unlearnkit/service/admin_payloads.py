"""The admin API's target payloads: one target, a list, ``{"targets": [...]}``, ``{"records": [...]}`` (a forget
data file's question/answer records), or JSON Lines of any of them."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from unlearnkit.service.request_body import loads_json
from unlearnkit.service.schemas import APIError, ForgetRecordIn, TargetIn, validation_error
from unlearnkit.service.settings import ServeSettings


def parse_targets(raw: bytes, content_type: str, settings: ServeSettings):
    """Targets from an admin body: one target, a list, {"targets": [...]}, {"records": [...]}
    (a forget data file's question/answer records), or JSON Lines of either."""
    from unlearnkit.data.records import QARecord
    from unlearnkit.data.targets import Target, targets_from_records

    if not raw.strip():
        raise APIError(400, "the request body is empty: send a target, a list of targets or forget records",
                       code="invalid_json")
    ctype = content_type.lower()
    if any(k in ctype for k in ("ndjson", "jsonl", "jsonlines")):
        items: Any = []
        for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    items.append(loads_json(line))
                except APIError:
                    raise APIError(400, f"line {n} of the JSON Lines body is not valid JSON",
                                   code="invalid_json") from None
        source = "jsonl"
    else:
        items = loads_json(raw)
        source = "json"
    if isinstance(items, dict):
        if "targets" in items and set(items) <= {"targets"}:
            items, source = items["targets"], source + ":targets"
        elif "records" in items and set(items) <= {"records"}:
            items, source = items["records"], source + ":records"
        else:
            items = [items]
    if not isinstance(items, list) or not items:
        raise APIError(400, "send a target object, a non-empty list of targets, {\"targets\": [...]} or "
                       "{\"records\": [...]}", code="invalid_targets")
    if len(items) > settings.max_targets_per_request:
        raise APIError(400, f"at most {settings.max_targets_per_request} targets or records per request",
                       code="too_many_targets")
    targets: list[Target] = []
    records: list[QARecord] = []
    for k, item in enumerate(items):
        try:
            if isinstance(item, str):
                targets.append(Target(**TargetIn(name=item).model_dump()))
            elif isinstance(item, dict) and "question" in item:
                r = ForgetRecordIn.model_validate(item)
                records.append(QARecord(question=r.question, answer=r.answer, subject=r.subject))
            elif isinstance(item, dict):
                t = TargetIn.model_validate(item)
                targets.append(Target(name=t.name, aliases=tuple(t.aliases), description=t.description,
                                      facts=tuple(t.facts)))
            else:
                raise APIError(400, f"item {k} is neither a target nor a forget record", code="invalid_targets")
        except ValidationError as exc:
            err = validation_error(exc)
            raise APIError(400, f"item {k}: {err.message}", param=err.param, code="invalid_targets") from None
    if records:
        targets.extend(targets_from_records(records))
    return targets, source
