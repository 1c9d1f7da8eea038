"""Agent runners: claim assigned work with a lease, execute it, submit the result."""
