"""Search for secrets in what a run left behind, without counting chance matches inside other numbers."""

from __future__ import annotations

import json
import re
from typing import Any

# Stamps and hex IDs are full of digits; a 6-digit code must not be "found" inside one by chance.
NOISE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:?\d{2}|Z)?"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\d+\.\d+"
)


def occurrences(secret: str, haystack: str) -> int:
    if secret.isdigit():
        return len(re.findall(rf"(?<![0-9]){secret}(?![0-9])", haystack))
    return haystack.count(secret)


class Haystack:
    """Text gathered from everything the runs left behind, by where it came from.

    Noise is blanked out once, when text is added, not again for every secret searched.
    """

    def __init__(self) -> None:
        self.parts: dict[str, list[str]] = {}

    def add(self, source: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=repr, sort_keys=True)
        self.parts.setdefault(source, []).append(NOISE.sub("<noise>", text))

    def find(self, secret: str) -> dict[str, int]:
        found = {}
        for source, texts in self.parts.items():
            count = sum(occurrences(secret, text) for text in texts)
            if count:
                found[source] = count
        return found
