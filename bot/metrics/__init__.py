"""Metrics adapters: what the release service's analysis reads through
bot.core.analysis.MetricsPort."""
