"""How the sink classifies a failed ClickHouse send, and what each class does.

``clickhouse-etl:glassflow-api/internal/sink/errors/classification.go``: a ClickHouse exception is
classified by its code; a network error without a code (EOF, connection refused or reset, broken
pipe, a net timeout) is ``retryable`` with the name ``network_io``; anything else is ``unknown``.
``retryable`` errors NAK the batch (redelivered after 5 s, at most 10 deliveries); ``permanent``
and ``unknown`` ones send every message of the batch to the DLQ as ``sink_rejection_<error_name>``
(``internal/sink/clickhouse.go``). TOO_MANY_PARTS (252) is in neither list: ``unknown``, DLQ'd.
"""

from __future__ import annotations

RETRYABLE, PERMANENT, UNKNOWN = "retryable", "permanent", "unknown"
CLASSES = (RETRYABLE, PERMANENT, UNKNOWN)

RETRYABLE_CODES = frozenset({159, 198, 201, 202, 203, 209, 210, 236, 241, 242, 243, 244, 254, 265, 279, 285, 286,
                             289, 290, 297, 364, 384, 999, 1000})
PERMANENT_CODES = frozenset({6, 7, 16, 18, 20, 25, 26, 27, 38, 41, 43, 44, 47, 53, 60, 72, 80, 81, 117, 164,
                             192, 193, 194, 195, 291, 321, 349, 392, 516})

# The ClickHouse error names (ch-go's SNAKE_UPPER) the simulator's scenarios use, by code.
CODES = {
    "TIMEOUT_EXCEEDED": 159,
    "TOO_MANY_SIMULTANEOUS_QUERIES": 202,
    "SOCKET_TIMEOUT": 209,
    "NETWORK_ERROR": 210,
    "MEMORY_LIMIT_EXCEEDED": 241,
    "TABLE_IS_READ_ONLY": 242,
    "NOT_ENOUGH_SPACE": 243,
    "TOO_MANY_PARTS": 252,
    "TYPE_MISMATCH": 53,
    "UNKNOWN_TABLE": 60,
    "CANNOT_PARSE_TEXT": 6,
    "AUTHENTICATION_FAILED": 516,
}
NETWORK_IO = "network_io"  # a network error without a ClickHouse code
UNKNOWN_NAME = "unknown"  # anything that is neither


def classify_code(code: int) -> str:
    if code in RETRYABLE_CODES:
        return RETRYABLE
    if code in PERMANENT_CODES:
        return PERMANENT
    return UNKNOWN


def classify(error_name: str) -> str:
    """The class of an ``error_name`` label value (a ClickHouse name, ``network_io`` or ``unknown``)."""
    if error_name == NETWORK_IO:
        return RETRYABLE
    code = CODES.get(error_name)
    return classify_code(code) if code is not None else UNKNOWN


def dlq_reason(error_name: str) -> str:
    """The DLQ ``reason`` of messages rejected with ``error_name``."""
    return f"sink_rejection_{error_name}"
