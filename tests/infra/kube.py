"""Being written: see tests/conftest.py."""
