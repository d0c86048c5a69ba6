"""Plain helpers the tests share (no fixtures: those are in tests/conftest.py): tiny model builders
(``tiny``), the ``hfmagic`` command as a subprocess (``cli``), run-store helpers (``store``), the
export cache's entries (``cache``) and the official SQuAD scoring script (``squad``)."""
