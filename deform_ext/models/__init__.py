"""Registered models: layers, backbones, necks, heads, detectors and losses."""
