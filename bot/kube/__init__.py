"""Kubernetes adapter; the server builds its KubernetesCluster, the ReleaseService calls it."""
