"""release-bot: Slack ChatOps for canary and blue-green releases on Kubernetes."""
