"""Adapters: one module per external system."""
