"""The Slack surface: Bolt wiring, listeners and Block Kit rendering. Nothing outside imports it."""
