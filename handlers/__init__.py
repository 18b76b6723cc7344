"""Slack listeners: turn commands and clicks into calls on the bot's services."""
