"""Slack adapter: messages built here are posted by the announcer and printed by the demo."""
