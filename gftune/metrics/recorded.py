"""A snapshot that answers from recorded answers only, so that the policy evaluation does no I/O.

The evaluation asks its questions lazily (a condition's ``for:`` is only checked once its instant
value holds; a sizing input only when a policy sizes), so the questions cannot be listed up front
without asking more than needed. Instead the evaluation reads a :class:`RecordedSnapshot`: a question
it has no answer for raises :class:`Unanswered`; the caller at the edge (``gftune.orchestration``)
asks the live snapshot (:func:`ask`), records the answer and evaluates again. The evaluation is
deterministic, so the last pass — the one without an unanswered question — asked exactly what the
lazy evaluation would have asked, and got the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gftune.metrics.expr import Expr
from gftune.metrics.naming import Naming


@dataclass(frozen=True)
class Question:
    """One call of a snapshot's query methods: ``instant(expr)``, ``over(expr, for_s)``, ``history(...)``."""

    method: str
    expr: Expr
    args: tuple[float, ...] = ()


class Unanswered(BaseException):
    """The evaluation needs an answer that was not recorded yet.

    A ``BaseException`` on purpose: code that turns unexpected failures of one policy into a note
    (``except Exception``) must not swallow a question meant for the edge.
    """

    def __init__(self, question: Question) -> None:
        super().__init__(f"{question.method}({question.expr!r})")
        self.question = question


class RecordedSnapshot:
    """The recorded answers of one snapshot (its naming, moment and window are the live snapshot's)."""

    def __init__(self, kind: str, naming: Naming, at: datetime, window_s: float) -> None:
        self.kind = kind
        self.naming = naming
        self.at = at
        self.window_s = window_s
        self._answers: dict[Question, Any] = {}

    @classmethod
    def like(cls, snapshot: Any) -> RecordedSnapshot:
        """An empty record of ``snapshot``'s answers."""
        return cls(snapshot.kind, snapshot.naming, snapshot.at, snapshot.window_s)

    def record(self, question: Question, answer: Any) -> None:
        self._answers[question] = answer

    def __len__(self) -> int:
        return len(self._answers)

    def _answer(self, question: Question) -> Any:
        try:
            return self._answers[question]
        except KeyError:
            raise Unanswered(question) from None

    def instant(self, expr: Expr) -> Any:
        return self._answer(Question("instant", expr))

    def over(self, expr: Expr, for_s: float) -> Any:
        return self._answer(Question("over", expr, (for_s,)))

    def history(self, expr: Expr, span_s: float, step_s: float) -> Any:
        return self._answer(Question("history", expr, (span_s, step_s)))


def ask(snapshot: Any, question: Question) -> Any:
    """Put ``question`` to a live snapshot (this is where a Prometheus snapshot sends its query)."""
    return getattr(snapshot, question.method)(question.expr, *question.args)
