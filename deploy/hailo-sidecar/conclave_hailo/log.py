"""One-line logs on stderr that the agent re-logs: `NODE-<SECTION> <level> <message> k=v …`.

The message is a constant string; data goes in the fields. Tensor data is never logged.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

LEVELS = ("debug", "info", "warn", "error")


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c.isspace() or c in "\"=" for c in text):
        return json.dumps(text)
    return text


class Logger:
    def __init__(self, level: str = "info", stream: TextIO = sys.stderr):
        if level not in LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
        self._threshold = LEVELS.index(level)
        self._stream = stream
        self._lock = threading.Lock()

    def log(self, section: str, level: str, message: str, /, **fields: Any) -> None:
        if LEVELS.index(level) < self._threshold:
            return
        line = f"NODE-{section} {level} {message}"
        if fields:
            line += " " + " ".join(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)
        # One write per line, so lines from threads never interleave.
        with self._lock:
            self._stream.write(line.replace("\n", " ") + "\n")
            self._stream.flush()
