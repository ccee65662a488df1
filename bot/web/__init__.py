"""The bot's HTTP side: health, readiness and metrics (the dashboard joins it later)."""
