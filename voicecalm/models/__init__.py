"""Embedded models: where they come from (PyPI data packages), how they are checked and loaded."""
