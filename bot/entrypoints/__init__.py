"""Entry points: the release-bot console script and what it runs (serve, demo, check-config)."""
