"""Pricing, reputation, escrow and settlement."""
