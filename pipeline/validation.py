"""Typed readers for sweep-file values: each failure names the file, the dotted key and what is allowed."""

from __future__ import annotations

import dataclasses
import math
import reprlib
from pathlib import Path
from typing import Any

from pipeline.errors import SweepConfigError


class Checker:
    """Small typed readers that raise SweepConfigError with the file and key in the message."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str):
        raise SweepConfigError(f"{self.path}: {key}: {problem}")

    def mapping(self, value: Any, key: str, required: bool = False, allowed: tuple = ()) -> dict:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {describe(value)}")
        if allowed:
            self.keys(value, key, allowed)
        return value

    def keys(self, raw: dict, key: str, allowed: tuple | type) -> None:
        names = [f.name for f in dataclasses.fields(allowed)] if isinstance(allowed, type) else list(allowed)
        for name in raw:
            if name not in names:
                where = name if key == "(top level)" else f"{key}.{name}"
                self.fail(where, f"unknown key; allowed: {', '.join(names)}")

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {describe(value)}")
        return value

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {describe(value)}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {describe(value)}")
        if not math.isfinite(value):
            self.fail(key, f"{value} is out of range; allowed: a finite number")
        return value

    def positive_int(self, value: Any, key: str) -> int:
        if self.integer(value, key) < 1:
            self.fail(key, f"must be at least 1, got {value}")
        return value

    def non_negative_int(self, value: Any, key: str) -> int:
        if self.integer(value, key) < 0:
            self.fail(key, f"must be 0 (never) or more, got {value}")
        return value

    def positive_number(self, value: Any, key: str) -> float:
        if self.number(value, key) <= 0:
            self.fail(key, f"must be greater than 0, got {value}")
        return float(value)

    def choice(self, value: Any, key: str, allowed: tuple) -> str:
        if value not in allowed:
            self.fail(key, f"{quote(value)} is not allowed; allowed: {', '.join(map(str, allowed))}")
        return value

    @staticmethod
    def quote(value: Any) -> str:
        return quote(value)


def quote(value: Any, limit: int = 80) -> str:
    """repr() cut to `limit` characters: a value from a sweep file can be huge (a YAML alias bomb)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    text = short.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def describe(value: Any) -> str:
    return "nothing" if value is None else f"{quote(value)} ({type(value).__name__})"

