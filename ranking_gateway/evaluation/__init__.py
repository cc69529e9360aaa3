"""Relevance and latency evaluation of a running gateway (`ranking-gateway eval`)."""
