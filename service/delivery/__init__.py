"""Sending results to the configured destinations, with retries and visible status."""
