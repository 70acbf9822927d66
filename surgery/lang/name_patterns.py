"""Name patterns of rule files (`regex "..."`, globs) compiled with RE2: linear time in the
name's length, whatever pattern a shared rule file brings; scopes and `matches()` use them."""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

from surgery.errors import RuleError


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is our RuleError, not a line on stderr
    options.never_capture = True  # only whether a name matches is asked
    return options


_RE2_OPTIONS = _re2_options()
_RE2_REFUSES = (
    "scope patterns are matched by RE2, in time linear in the name's length, so backreferences "
    "and lookaround are not supported"
)


class NameRegex:
    """A rule file's name pattern (`regex "..."`, or a glob translated) compiled with RE2.

    RE2 matches in time linear in the name's length whatever the pattern: rule files are data
    that users share, and a backtracking engine takes exponential time on `(a+)+$` (or
    polynomial on the glob `*a*a*a*a*b`) against a long name. `fullmatch` is the whole name.
    """

    __slots__ = ("pattern", "_compiled")

    def __init__(self, pattern: str, glob: str | None = None) -> None:
        """Compile; RuleError (without a location) saying why RE2 refuses the pattern (naming
        `glob` when the regex is its translation)."""
        self.pattern = pattern
        try:
            self._compiled = re2.compile(pattern, _RE2_OPTIONS)
        except re2.error as exc:
            why = exc.args[0] if exc.args else exc
            if isinstance(why, bytes):
                why = why.decode("utf-8", "replace")
            if glob is not None:
                raise RuleError(f"bad name pattern {glob!r}: {why}") from None
            raise RuleError(f"bad regex {pattern!r}: {why} ({_RE2_REFUSES})") from None

    def fullmatch(self, name: str) -> bool:
        """Whether the whole of `name` matches."""
        # as UTF-8 bytes, what RE2 reads anyway: the wrapper then skips mapping byte offsets
        # back to characters (2.5 us a call instead of 4.3)
        return self._compiled.fullmatch(name.encode()) is not None


@functools.lru_cache(maxsize=512)
def name_regex(pattern: str) -> NameRegex:
    """A scope's `regex "..."` compiled with RE2; RuleError (no location) if RE2 refuses it."""
    return NameRegex(pattern)


@functools.lru_cache(maxsize=512)
def glob_regex(pattern: str) -> NameRegex:
    """Compile a name glob: `*` within a segment, `**` any depth, `?`, `[abc]`, `{a,b}`."""
    out: list[str] = []
    i, n, depth = 0, len(pattern), 0
    while i < n:
        ch = pattern[i]
        if pattern.startswith("/**", i) and (i + 3 == n or pattern[i + 3] == "/"):
            out.append("(?:/.*)?")  # `a/**` is `a` and everything under it
            i += 3
        elif pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif ch == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif ch == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        elif ch == "," and depth:
            out.append("|")
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    if depth:
        raise RuleError(f"unbalanced '{{' in name pattern {pattern!r}")
    return NameRegex("".join(out), pattern)  # RuleError for `[]`, `[a-`


def glob_match(pattern: str, name: str) -> bool:
    """Whether `name` matches the glob `pattern` as a whole."""
    return glob_regex(pattern).fullmatch(name)
