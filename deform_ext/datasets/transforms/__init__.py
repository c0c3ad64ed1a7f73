"""Registered data transforms."""
