"""What a call applied twice leaves behind in the sandbox, counted for the reliability tally."""

from __future__ import annotations

from collections import Counter
from typing import Any


def duplicates(sandbox: Any) -> int:
    """Numbers beyond one per phone number, plus register calls applied beyond one per number."""
    numbers = sandbox.numbers()
    per_phone = Counter("".join(ch for ch in n["display_phone_number"] if ch.isdigit()) for n in numbers)
    extra_numbers = sum(count - 1 for count in per_phone.values())
    extra_registers = sum(max(0, int(sandbox.register_calls(n["id"])) - 1) for n in numbers)
    return extra_numbers + extra_registers
