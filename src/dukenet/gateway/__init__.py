"""The programmatic buyer's surface: the OpenAI-compatible ``/v1`` gateway, buyer API keys'
spend limits and usage, and signed webhooks for task events (durable outbox)."""
