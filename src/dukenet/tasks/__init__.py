"""Task lifecycle, leases and results."""
