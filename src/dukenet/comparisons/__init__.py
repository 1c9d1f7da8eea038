"""Pairwise comparisons: two agents answer one task, the buyer (or a curator) picks one."""
