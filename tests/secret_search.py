"""Search what a run left behind for secrets, however they were written down.

A secret is found plain, URL-encoded (at any depth), JSON-escaped, inside base64 of the text that
holds it, and next to other characters or digits (``602917.0``, ``v26.602917``, glued to a phone
number). A match that lies inside a timestamp, a UUID, a long float or an ID the test registered
with :meth:`Haystack.know` is counted apart as *ambiguous*: a 6-digit code can sit in one of those
by chance, so it is reported but does not by itself fail a test.

Secrets that tests search for must not occur by chance: :func:`chance_problem` says why a value
could.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

# Where a few digits sit by chance: ISO timestamps (and clock times), UUIDs, long hex IDs, epoch
# seconds, floats printed at full precision, and the run durations dag.test prints (microseconds:
# six digits, as many as a PIN). Digits alone are no ID: a PIN glued to a phone number must be found.
NOISE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b\d{2}:\d{2}:\d{2}[.,]\d+"
    r"|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b(?=[0-9]*[a-f])[0-9a-f]{16,}\b"
    r"|\b1\d{9}\.\d+"
    r"|\d+\.\d{7,}"
    r"|\brun_duration=\d+\.\d+"
)
_JSON_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# Decoding is applied at most this many times in a row (URL-encoded JSON inside a URL, and so on).
MAX_DECODING_DEPTH = 3
# How much text to show either side of a match in a report.
CONTEXT = 40
# A line only the provider's own code writes, and every run whose output a test searches writes
# it: the create operator's.
PROVIDER_LINE = re.compile(r"Phone number ID: \d+")
# The HTTP client's DEBUG line of a Graph call, where a token or a proof in a URL would show.
GRAPH_CALL_LINE = re.compile(r'"(?:GET|POST|DELETE) /v\d+\.\d+/\S* HTTP/1\.1" \d{3}')


def _json_unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        return chr(int(escape[1:], 16)) if escape[0] == "u" else _JSON_SIMPLE[escape]

    return _JSON_ESCAPE.sub(one, text)


def decodings(text: str) -> list[str]:
    """The text, and every distinct text URL- and JSON-unescaping it (repeatedly) gives."""
    views = [text]
    frontier = [text]
    for _depth in range(MAX_DECODING_DEPTH):
        found = []
        for view in frontier:
            for decoded in (unquote(view), _json_unescape(view)):
                if decoded not in views:
                    views.append(decoded)
                    found.append(decoded)
        frontier = found
        if not frontier:
            break
    return views


def base64_forms(secret: str) -> set[str]:
    """What the secret looks like inside base64 of any text holding it, whatever its alignment.

    For each of the three byte offsets the secret can start at, the characters that depend on the
    secret's bytes alone (not on the bytes around it).
    """
    raw = secret.encode()
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        start = -(-offset * 8 // 6)
        end = (offset + len(raw)) * 8 // 6
        form = encoded[start:end]
        if len(form) >= 4:
            forms.add(form)
            forms.add(form.replace("+", "-").replace("/", "_"))
    return forms


def chance_problem(secret: str) -> str | None:
    """Why ``secret`` could turn up in a run's output by chance, or ``None`` when it could not."""
    if secret.isdigit():
        if len(secret) < 6:
            return "shorter than 6 digits"
        if secret[0] == "0":
            return "starts with 0 (it reads differently as a number)"
        if len(set(secret)) < 5:
            return "fewer than 5 distinct digits"
        for a, b, c in zip(secret, secret[1:], secret[2:], strict=False):
            if int(b) - int(a) == int(c) - int(b) and abs(int(b) - int(a)) <= 2:
                return f"a run ({a}{b}{c})"
        return None
    if len(secret) < 12:
        return "shorter than 12 characters"
    if not (any(ch.isdigit() for ch in secret) and any(ch.isalpha() for ch in secret)):
        return "not a mix of letters and digits"
    return None


@dataclass
class Findings:
    """Where a secret was found, counted by source; ``ambiguous`` holds matches inside noise or IDs.

    ``examples`` shows a few matches in context, for the failure message.
    """

    found: dict[str, int] = field(default_factory=dict)
    ambiguous: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


@dataclass
class _Text:
    views: list[str]
    noise: list[list[tuple[int, int]]]


class Haystack:
    """Text gathered from everything the runs left behind, by where it came from.

    Decoding and finding noise happen once, when text is added, not again for every secret.

    :param known_ids: digit strings that are IDs (Graph IDs, phone numbers): a secret inside one
        is ambiguous, not found.
    """

    def __init__(self, known_ids: tuple[str, ...] = ()) -> None:
        self.parts: dict[str, list[_Text]] = {}
        self.known_ids: set[str] = set(known_ids)

    def know(self, *ids: str) -> None:
        """Register more IDs (only their digits count)."""
        self.known_ids.update(re.sub(r"\D", "", str(value)) for value in ids if value)

    def add_output(self, source: str, text: str, proof: re.Pattern[str] = PROVIDER_LINE) -> None:
        """Add what a run printed or logged, once it is shown to hold ``proof`` (by default a line
        of the provider's): an empty source, or one the provider never wrote to, would be searched
        for nothing."""
        if not proof.search(text):
            raise AssertionError(
                f"{source}: {len(text)} characters, none matching {proof.pattern!r}: searching it proves nothing"
            )
        self.add(source, text)

    def add(self, source: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=repr, sort_keys=True)
        views = decodings(text)
        noise = [[match.span() for match in NOISE.finditer(view)] for view in views]
        self.parts.setdefault(source, []).append(_Text(views, noise))

    def search(self, secret: str) -> Findings:
        findings = Findings()
        forms = base64_forms(secret)
        for source, texts in self.parts.items():
            for text in texts:
                # Each decoding of a text shows the same occurrences again: count the fullest one.
                found, ambiguous, examples = max(
                    (
                        self._matches(secret, forms, view, noise)
                        for view, noise in zip(text.views, text.noise, strict=True)
                    ),
                    key=lambda counted: counted[:2],
                )
                if found:
                    findings.found[source] = findings.found.get(source, 0) + found
                if ambiguous:
                    findings.ambiguous[source] = findings.ambiguous.get(source, 0) + ambiguous
                findings.examples += [f"{example} ({source})" for example in examples][: 10 - len(findings.examples)]
        return findings

    def _matches(
        self, secret: str, forms: set[str], view: str, noise: list[tuple[int, int]]
    ) -> tuple[int, int, list[str]]:
        found = ambiguous = 0
        examples = []
        for start in _starts(view, secret):
            end = start + len(secret)
            kind = "ambiguous" if self._is_ambiguous(view, start, end, noise) else "found"
            found, ambiguous = (found + 1, ambiguous) if kind == "found" else (found, ambiguous + 1)
            examples.append(f"{kind}: ...{view[max(0, start - CONTEXT) : end + CONTEXT]}...")
        for form in forms:
            for start in _starts(view, form):
                found += 1
                examples.append(f"found as base64: ...{view[max(0, start - CONTEXT) : start + len(form) + CONTEXT]}...")
        return found, ambiguous, examples

    def _is_ambiguous(self, view: str, start: int, end: int, noise: list[tuple[int, int]]) -> bool:
        if any(low <= start and end <= high for low, high in noise):
            return True
        if not (view[start].isdigit() and view[end - 1].isdigit()):
            return False
        # The whole run of digits the match sits in: a known ID holding it by chance is ambiguous;
        # anything else (the secret alone, or glued to other digits) is a find.
        low, high = start, end
        while low > 0 and view[low - 1].isdigit():
            low -= 1
        while high < len(view) and view[high].isdigit():
            high += 1
        return (low, high) != (start, end) and view[low:high] in self.known_ids


def _starts(text: str, needle: str) -> list[int]:
    starts = []
    index = text.find(needle)
    while index != -1:
        starts.append(index)
        index = text.find(needle, index + 1)
    return starts


def search_each(haystack: Haystack, secrets: dict[str, str]) -> dict[str, Findings]:
    """Search each distinct secret value once, keyed by the names it goes by.

    Ambiguous matches are not failures, but they are never dropped: they raise a warning that the
    test run's summary shows.
    """
    names: dict[str, list[str]] = {}
    for name, value in secrets.items():
        if value:
            names.setdefault(value, []).append(name)
    findings = {", ".join(names[value]): haystack.search(value) for value in names}
    ambiguous = {name: f.examples for name, f in findings.items() if f.ambiguous}
    if ambiguous:
        warnings.warn(f"secret values inside timestamps or IDs, probably by chance: {ambiguous}", stacklevel=2)
    return findings


def leaked(findings: dict[str, Findings]) -> dict[str, list[str]]:
    """The secrets found, with where (for an assertion message)."""
    return {name: f.examples for name, f in findings.items() if f.found}
