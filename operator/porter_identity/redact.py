"""Remove secret values (an ExternalId, anything read from a Secret) from text bound for status, Events, logs."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable

REDACTED = "(redacted)"

# STS's documented ExternalId format (AssumeRole API reference); Java's \w, which STS uses, is ASCII only.
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)


def _spellings(value: str) -> set[str]:
    """The forms a cloud may echo a value in: as sent, URL-encoded (query protocol bodies), JSON-escaped."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every spelling of every secret replaced; longest first, so no part of a longer one survives."""
    forms = {form for secret in secrets if secret for form in _spellings(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def external_id_problem(value: str) -> str | None:
    """Why STS would refuse `value` as an ExternalId, without repeating it; None when it is well formed."""
    if EXTERNAL_ID.fullmatch(value):
        return None
    if not 2 <= len(value) <= 1224:
        return f"it has {len(value)} characters; AWS requires 2 to 1224"
    return "it holds characters outside letters, digits and +=,.@:/-_ (spaces and line breaks included)"
