"""hfmagic's version (what the run store records with every run)."""

__version__ = "0.1.0"
