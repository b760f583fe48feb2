"""Resolution of a policy's value expressions (``field:``, ``signal:``, ``constraint:`` references,
``baseline``, ``+/-N%``) against one pipeline's facts and metrics.
"""

from __future__ import annotations

from typing import Any

from gftune.desired import paths
from gftune.formatting import number as fmt
from gftune.policy import guards
from gftune.policy.facts import PipelineFacts
from gftune.policy.language import REFERENCE_TERM, RELATIVE_CHANGE, reference_terms
from gftune.policy.views import MetricsView


class Resolver:
    """Resolve ``field:``, ``signal:``, ``constraint:`` references against one pipeline."""

    def __init__(self, facts: PipelineFacts, view: MetricsView) -> None:
        self.facts = facts
        self.view = view

    def term(self, kind: str, name: str) -> tuple[float | None, str]:
        if kind == "field":
            value = paths.get(self.facts.doc, name)
            number = guards.to_number(guards.field_kind(name, value), value)
            return number, f"{name} ({value if value is not None else 'unset'})"
        if kind == "constraint":
            value = self.facts.constraints.get(name)
            if value is None and name == "partitions":
                reading = self.view.reading("kafka_partitions")
                return (reading.value if reading.known else None), "partitions (measured)"
            if value is None and name == "max_replicas":
                return float(guards.DEFAULT_MAX_REPLICAS), "max_replicas (default)"
            return guards.to_number(guards.MEMORY if "ceiling" in name else guards.NUMBER, value), name
        reading = self.view.reading(name)
        return (reading.value if reading.known else None), name

    def number(self, raw: Any, *, baseline: float | None = None) -> tuple[float | None, str]:
        """A number (or None when a reference is unknown) and how it was derived."""
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw), fmt(float(raw))
        text = str(raw).strip()
        relative = RELATIVE_CHANGE.match(text)
        if relative:
            if baseline is None:
                return None, text
            return baseline * (1 + float(relative.group(1)) / 100.0), f"baseline {text}"
        product, parts = 1.0, []
        for term in reference_terms(text):
            if term == "baseline":
                if baseline is None:
                    return None, text
                product *= baseline
                parts.append("baseline")
                continue
            try:
                number = float(term)
            except ValueError:
                match = REFERENCE_TERM.match(term)
                if not match:
                    return None, text
                number, label = self.term(match.group(1), match.group(2))
                if number is None:
                    return None, f"{label}: unknown"
                parts.append(label)
            else:
                parts.append(f"{number:g}")
            product *= number
        derived = " x ".join(parts)
        return product, (f"{derived} = {fmt(product)}" if len(parts) > 1 or ":" in text else fmt(product))
