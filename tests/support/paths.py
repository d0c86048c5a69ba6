"""Where things are in this checkout, whichever folder a test module sits in."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root: hfmagic/, docs/, examples/, js/, tests/
