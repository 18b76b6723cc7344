"""The chart renderer: draws bot.core.chart.Chart as a PNG with matplotlib (ChartRendererPort)."""
