"""Shared bases: ORM base, schema base, clock, pagination."""
