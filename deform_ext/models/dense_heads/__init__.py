"""Registered dense heads."""
