"""Scenarios: what one iteration does to a guest, and how its outcome is decided from evidence."""
