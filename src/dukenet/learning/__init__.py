"""Duke: features, the learned router, routing policy, evaluation and RouterBench data."""
