"""Timestamps as the GlassFlow API writes them (``created_at``/``updated_at`` of ``/health``: RFC 3339,
``Z`` allowed); gftune's own tags write them the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_timestamp(text: Any) -> datetime | None:
    """An API or tag timestamp (RFC 3339, ``Z`` allowed) as an aware datetime; None when unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
