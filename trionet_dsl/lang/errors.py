"""One error type for every bad input, so callers (and the CLI) never see a traceback.

A :class:`SpaceError` knows where it happened (file, line, column) and renders a
compiler-style message with the offending source line, a caret and a hint.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A 1-based line/column position in a source file."""

    file: str
    line: int
    column: int


class SpaceError(Exception):
    """A syntax or semantic error in a `.space` / `.arch` file, or a bad user input."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "<input>",
        line: int = 0,
        column: int = 0,
        source: str | None = None,
        hint: str | None = None,
        width: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.source = source
        self.hint = hint
        self.width = max(1, width)

    @property
    def location(self) -> Location:
        return Location(self.file, self.line, self.column)

    def excerpt(self) -> str:
        """The offending line with a caret under the column ('' when unknown)."""
        if not self.source or self.line < 1:
            return ""
        # the parser counts lines by '\n' only (not by \f, \x85, \u2028 ... as splitlines does)
        lines = self.source.split("\n")
        if self.line > len(lines):
            return ""
        text = lines[self.line - 1].rstrip("\r").expandtabs(1)
        gutter = f"{self.line:>4} | "
        pad = " " * (len(gutter) - 2) + "| " + " " * max(0, self.column - 1)
        return f"{gutter}{text}\n{pad}{'^' * self.width}"

    def render(self) -> str:
        """Compiler-style multi-line message: ``file:line:col: error: ...``."""
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        # an option or environment problem has no file: no "<input>:" prefix to puzzle over
        parts = [f"error: {self.message}" if where == "<input>" else f"{where}: error: {self.message}"]
        ex = self.excerpt()
        if ex:
            parts.append(ex)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None when nothing is close."""
    opts = list(options)
    close = difflib.get_close_matches(word, opts, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'? (expected one of: {', '.join(opts)})"
    return f"expected one of: {', '.join(opts)}" if opts else None
