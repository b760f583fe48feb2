"""Kubernetes resource quantities (``500m``, ``1.5Gi``, ``2e3``) and NATS byte sizes.

The GlassFlow API validates cpu, memory and storage with Kubernetes' ``resource.ParseQuantity``;
``1GB`` is rejected there. ``nats.stream.maxBytes`` additionally accepts ``<n>KB|MB|GB|TB`` with
*binary* multiples (``25GB`` = 25 x 1024^3). Values are exact :class:`fractions.Fraction` so that
``1.5Gi`` and ``1536Mi`` compare equal without float noise.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?$")
_NATS_BYTES = re.compile(r"^(\d+)(KB|MB|GB|TB)$")
_NATS_SCALE = {"KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


class QuantityError(ValueError):
    """A string that Kubernetes' ``resource.ParseQuantity`` would reject."""


def parse_quantity(text: str) -> Fraction:
    """Parse a Kubernetes quantity into an exact number (cores, bytes, ...)."""
    if not isinstance(text, str):
        raise QuantityError(f"quantities must be strings, got {type(text).__name__}")
    match = _QUANTITY.match(text.strip()) if text.strip() == text else None
    if not match:
        raise QuantityError("quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    sign, number, suffix, exponent = match.groups()
    value = Fraction(number)
    if suffix in _BINARY:
        value *= _BINARY[suffix]
    elif suffix is not None:
        value *= _DECIMAL[suffix]
    elif exponent is not None:
        value *= Fraction(10) ** int(exponent)
    return -value if sign == "-" else value


def is_valid_quantity(text: object) -> bool:
    try:
        parse_quantity(text)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def parse_nats_bytes(text: str) -> Fraction:
    """Parse ``nats.stream.maxBytes``: a Kubernetes quantity or ``<n>KB|MB|GB|TB`` (binary)."""
    if isinstance(text, str):
        match = _NATS_BYTES.match(text)
        if match:
            return Fraction(int(match.group(1)) * _NATS_SCALE[match.group(2)])
    return parse_quantity(text)


def is_valid_nats_bytes(text: object) -> bool:
    try:
        parse_nats_bytes(text)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def cpu_cores(text: str) -> float:
    return float(parse_quantity(text))


def memory_bytes(text: str) -> float:
    return float(parse_quantity(text))


def format_memory(num_bytes: float) -> str:
    """A readable binary quantity that parses back to at least ``num_bytes`` (``1536Mi``)."""
    mib = -(-int(num_bytes) // 2**20)  # ceil to whole MiB
    if mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    return f"{mib}Mi"


def format_cpu(cores: float) -> str:
    millis = round(cores * 1000)
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis}m"
