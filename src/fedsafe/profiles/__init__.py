"""Shipped configuration profiles (YAML)."""
