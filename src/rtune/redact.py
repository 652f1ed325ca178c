"""Credentials never leave the process: the `user:password@` of a server URL is masked in whatever rtune
shows (errors, notices) or records (run.json, summary.json, stage.json, annotations), while the request
itself still carries it."""

from __future__ import annotations

import json
import re
from typing import Any

_CREDENTIALS = re.compile(r"(?<=://)[^/\s\"']*@")  # the user:password@ of a URL


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it masked."""
    return _CREDENTIALS.sub("***@", text)


def redacted(value: Any) -> Any:
    """A JSON-serialisable value with every string in it redacted: settings before they are recorded."""
    return json.loads(redact(json.dumps(value, default=str)))
