"""Pieces every process of cairn shares: settings, secrets, identifiers."""
