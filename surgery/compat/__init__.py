"""Compatibility layers for tools surgery replaces (graphsurgeon's API for existing scripts)."""
