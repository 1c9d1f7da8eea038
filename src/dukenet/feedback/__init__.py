"""Buyers' feedback on results: thumbs, ratings, comments and corrected answers."""
