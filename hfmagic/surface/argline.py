"""How a magic's line becomes words: as a POSIX shell splits a command line.

IPython's own splitter (``arg_split``, behind ``parse_argstring``) keeps quotes as part of a word
and has no comments, so ``%load_model '/data/with space'`` named a folder with quotes in its name
and ``%load_model demo  # binds demo`` passed ``#``, ``binds`` and ``demo`` on. Here the standard
library's ``shlex`` in POSIX mode splits each word (quotes group and are removed), and a ``#`` that
starts a word outside quotes begins a comment, as in a shell (``shlex``'s own comments would also
cut ``data#2.csv`` short, so the word starts are checked here). A backslash escapes the next
character outside single quotes (``/data/with\\ space``, as IPython's completer writes a path), except
on Windows, where it separates folders.

A Python dict literal starting a word is one word, as written (``--label-map {'0': 'sport', '1':
'tech'}``).

IPython puts ``{p!r}`` in as Python's ``repr`` of the value: a word that is exactly the repr of a
printable string is read as Python reads it, so a path with a backslash or with both kinds of
quotes comes through too (a shell would read ``'C:\\\\x'`` with both backslashes). ``$p`` is put in
as plain text, which no splitter can tell from several words: :func:`split_path` recognises the
result when it names an existing path, for the error message.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import warnings
from typing import NamedTuple

from hfmagic.core.errors import UsageProblem

# one Python string literal without a prefix, as repr() writes one, ending the word
_PY_STRING = re.compile(r"""('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")(?=\s|$)""")


class Word(NamedTuple):
    text: str  # the word as the command gets it: quotes removed
    start: int  # where it starts in the line
    bare: bool  # written without quotes or escapes: the line holds ``text`` itself at ``start``


def split_line(line: str) -> list[Word]:
    """The words of a magic's line, up to a comment; one line saying what is wrong when a quote is
    left open."""
    words: list[Word] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if pos == len(line) or line[pos] == "#":
            return words
        literal = _python_string(line, pos) or _python_dict(line, pos)
        if literal is not None:
            text, end = literal
        else:
            lexer = shlex.shlex(line[pos:], posix=True)
            lexer.whitespace_split, lexer.commenters = True, ""
            if os.name == "nt":  # a backslash separates folders there; IPython's completer quotes instead
                lexer.escape = ""
            try:
                text = lexer.get_token()
            except ValueError as exc:  # No closing quotation / No escaped character
                raise UsageProblem(f"could not split {line.strip()!r} into words ({str(exc).lower()}): close the "
                                   "quote, or put a path in from a variable p with {p!r}") from None
            end = pos + lexer.instream.tell()
        words.append(Word(text, pos, line.startswith(text, pos) and line[pos] not in "'\""))
        pos = end


def _python_string(line: str, pos: int) -> tuple[str, int] | None:
    """``(value, end)`` when the word at ``pos`` is exactly ``repr()`` of a printable string."""
    match = _PY_STRING.match(line, pos)
    if match is None:
        return None
    with warnings.catch_warnings():  # '\d' and friends: not a repr anyway
        warnings.simplefilter("ignore")
        try:
            value = ast.literal_eval(match.group(1))
        except (SyntaxError, ValueError):
            return None
    if not isinstance(value, str) or not value.isprintable() or repr(value) != match.group(1):
        return None
    return value, match.end()


def _python_dict(line: str, pos: int) -> tuple[str, int] | None:
    """``(text, end)`` when a Python dict literal starts the word at ``pos`` (``--label-map {'0': 'sport'}``):
    one word, kept as written (a shell would drop its quotes and split it at its spaces)."""
    if line[pos] != "{":
        return None
    for close in (m.end() for m in re.finditer(r"\}(?=\s|$)", line[pos:])):
        try:
            if isinstance(ast.literal_eval(line[pos:pos + close]), dict):
                return line[pos:pos + close], pos + close
        except (SyntaxError, ValueError):
            continue
    return None


def split_path(line: str, words: list[Word]) -> str | None:
    """When unquoted words of the line are one existing path split at its spaces (``$p`` put it in
    as plain text), a line saying so and how to quote it; else None."""
    for i, first in enumerate(words):
        for j in range(i + 1, min(len(words), i + 16)):
            if not all(w.bare for w in words[i:j + 1]):
                break
            raw = line[first.start:words[j].start + len(words[j].text)]
            if os.path.exists(os.path.expanduser(raw)):
                parts = ", ".join(repr(w.text) for w in words[i:j + 1])
                return (f"the path {raw!r} was split at its spaces into {j - i + 1} words ({parts}); quote it, "
                        "and from a variable p write \"$p\" or {p!r} (IPython puts $p in as plain text)")
    return None
