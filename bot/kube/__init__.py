"""Kubernetes adapter: workloads, traffic routers and preflight checks; called by the reconciler."""
