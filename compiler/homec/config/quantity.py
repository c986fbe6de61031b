"""Kubernetes resource quantities: parsing and the canonical form the API server would store."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_PATTERN = re.compile(r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class QuantityError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def parse_quantity(text: str) -> tuple[Decimal, bool]:
    """Parse a quantity such as ``500m`` or ``1.5Gi`` into its value and whether it used a binary suffix."""
    match = _PATTERN.match(text.strip())
    if not match:
        raise QuantityError(
            f"invalid Kubernetes quantity {text!r}",
            "write a number with an optional suffix such as 500m, 2, 512Mi or 1Gi",
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise QuantityError(f"invalid number in quantity {text!r}") from exc
    suffix = match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix], True
    return number * _DECIMAL[suffix], False


def canonical_quantity(text: str) -> str:
    """Return the canonical spelling of a quantity, as ``kubectl get -o yaml`` would show it.

    Binary input keeps a binary suffix (the largest that divides the value exactly); decimal input keeps a
    decimal suffix, with milli-units where the value has a fraction. ``0.5`` becomes ``500m`` and
    ``1024Mi`` becomes ``1Gi``.
    """
    value, binary = parse_quantity(text)
    if value == 0:
        return "0"
    if binary and value == value.to_integral_value():
        return _largest_binary(int(value))
    return _largest_decimal(value)


def _largest_binary(value: int) -> str:
    for suffix, factor in reversed(_BINARY.items()):
        if value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def _largest_decimal(value: Decimal) -> str:
    for suffix in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
        scaled = value / _DECIMAL[suffix]
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    # Kubernetes rounds anything finer than a nano-unit up to the next nano-unit.
    return f"{int((value / _DECIMAL['n']).to_integral_value(rounding='ROUND_CEILING'))}n"


def quantity_value(text: str) -> Decimal:
    return parse_quantity(text)[0]


def format_decimal(value: Decimal) -> str:
    """Format a summed quantity without trailing zeros: ``20.000`` becomes ``20``."""
    text = format(value.normalize(), "f")
    return text
