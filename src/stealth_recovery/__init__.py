"""Stealth Recovery: wins back failed payments."""

__version__ = "0.1.0"
