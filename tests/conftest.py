"""Every test may use the real services; each plugin below starts one on first use."""

pytest_plugins = [
    "tests.infra.redis_server",
    "tests.infra.redis_sentinel",
    "tests.infra.prometheus_server",
    "tests.infra.slack",
    "tests.infra.kube",
    "tests.infra.tools",
    "tests.infra.argo",
    "tests.infra.release_world",
]
