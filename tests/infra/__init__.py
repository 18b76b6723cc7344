"""Test infrastructure: real Redis, Prometheus and Kubernetes processes, and the Slack stand-in.

Used by tests/conftest.py, which turns these into pytest fixtures.
"""
