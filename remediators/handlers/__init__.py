"""Thin Lambda entry points: parse, one core call, a typed result."""
