"""What stops cost in records: judged from what :class:`gftune.apply.records.RecordCounter` read around
each stop (the DLQ route's total, the operator's sweep counter, the components' DLQ writes). Pure, so
that the verdict (:mod:`gftune.apply.judging`) and the report can use it; why a stop loses records is
in :mod:`gftune.apply.records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Json = dict[str, Any]
SWEPT = "operator_sweeped_messages_total"
DLQ_WRITTEN = "dlq_records_written_total"
WITH_LOSSES = "applied with losses"


def _delta(entry: Mapping[str, Any], name: str) -> float | None:
    before, after = entry.get(f"{name}_before"), entry.get(f"{name}_after")
    if isinstance(before, int | float) and isinstance(after, int | float):
        return max(0.0, float(after) - float(before))
    return None


def losses(records: Sequence[Mapping[str, Any]]) -> float:
    """Records that left the pipeline for the DLQ during its stops (the larger of the DLQ route's growth
    and the sweep counter's)."""
    total = 0.0
    for entry in records:
        total += max(_delta(entry, "dlq") or 0.0, _delta(entry, "swept") or 0.0)
    return total


def describe(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per stop: the DLQ total before → after, the sweep and the components' DLQ writes."""
    lines = []
    for entry in records:
        parts = []
        dlq = _delta(entry, "dlq")
        parts.append(f"DLQ {int(entry['dlq_before'])} → {int(entry['dlq_after'])} (+{int(dlq)})" if dlq is not None
                     else "DLQ state not read" + (f" ({entry['detail']})" if entry.get("detail") else ""))
        swept = _delta(entry, "swept")
        if swept is not None:
            parts.append(f"{int(swept)} swept by the operator's forced stop" if swept else "nothing swept")
        written = _delta(entry, "written")
        if written is not None:
            parts.append(f"{int(written)} written to the DLQ by the components")
        lines.append(f"around {entry.get('step', 'the stop')}: " + ", ".join(parts))
    return lines


def outcome_with_losses(outcome: str | None, records: Sequence[Mapping[str, Any]]) -> str | None:
    """A change that lost records is at best "applied with losses", never "verified", "improved" or "applied"."""
    if outcome in ("verified", "improved", "applied") and losses(records) > 0:
        return WITH_LOSSES
    return outcome
