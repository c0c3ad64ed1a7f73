"""Registered detectors."""
