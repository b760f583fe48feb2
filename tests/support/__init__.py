"""Shared test helpers: free ports, the Prometheus runner."""
