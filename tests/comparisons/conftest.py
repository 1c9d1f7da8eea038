"""The comparison tests run with the labelling tests' one-hour dispute (and pick) window."""

from tests.feedback.test_labels import settings

__all__ = ["settings"]
