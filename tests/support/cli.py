"""The ``hfmagic`` command as a user runs it, and what its one-line answers must look like."""

from __future__ import annotations

import os
import subprocess
import sys


def cli(*args, env: dict | None = None, timeout: float | None = 600, check: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """``hfmagic ARGS...`` in a fresh process (``python -m hfmagic``), its output captured as text.

    ``env`` adds to (or overrides) this process's environment; ``timeout`` ends a command that hangs
    (subprocess.TimeoutExpired); ``check`` asserts that it exited 0 (its stderr as the message); other
    keywords go to subprocess.run (``input``, ``cwd``). Arguments are turned into strings (paths)."""
    done = subprocess.run([sys.executable, "-m", "hfmagic", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def one_line(text: str) -> str:
    """The text, which must be exactly one line (no traceback)."""
    assert text.strip() and "\n" not in text.strip() and "Traceback" not in text, text
    return text.strip()
