"""Agent registry: LLM endpoints, replay agents, built-in and human agents."""
