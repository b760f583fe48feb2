"""One simulated Kafka cluster: a topic has one partition count, whoever reads it.

Scenario pipelines read topics of their own; a pipeline created through the API on a topic others
already read takes that topic's partition count, and a partition change (``PATCH /_sim/model``)
applies to every reader from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gftune.sim.params import deep_merge
from gftune.sim.rows import Row

Json = dict[str, Any]


def readers(rows: Iterable[Row], topic: str, exclude: Row) -> list[tuple[Row, Any]]:
    """``(row, source state)`` of every other pipeline reading ``topic``."""
    return [(other, source) for other in rows if other is not exclude and other.model.kafka
            for source in other.model.sources if source.topic == topic]


def set_partitions(row: Row, source_id: str, partitions: int, model_params: dict[str, Json] | None,
                   default_model: Json) -> None:
    """Give one source of ``row`` a partition count; remembered in ``model_params`` (when given) so
    that a pipeline re-created under the same id keeps it."""
    patch = {"sources": {source_id: {"partitions": partitions}}}
    row.model.params = deep_merge(row.model.params, patch)
    row.model.configure(row.doc, row.resources)
    if model_params is not None:
        base = model_params.get(row.pipeline_id, default_model)
        model_params[row.pipeline_id] = deep_merge(base, patch)


def join_topics(row: Row, rows: Iterable[Row], default_model: Json) -> None:
    """A pipeline reading a topic that others already read sees the topic's partition count."""
    rows = list(rows)
    for source in row.model.sources if row.model.kafka else []:
        others = readers(rows, source.topic, row)
        if others and others[0][1].partitions != source.partitions:
            set_partitions(row, source.source_id, others[0][1].partitions, None, default_model)


def spread_partitions(row: Row, rows: Iterable[Row], model_params: dict[str, Json], default_model: Json,
                      advance: Callable[[Row], None]) -> None:
    """After ``row``'s partitions changed: every other reader of its topics follows, from now on."""
    rows = list(rows)
    for source in row.model.sources if row.model.kafka else []:
        for other, theirs in readers(rows, source.topic, row):
            if theirs.partitions != source.partitions:
                advance(other)
                set_partitions(other, theirs.source_id, source.partitions, model_params, default_model)
