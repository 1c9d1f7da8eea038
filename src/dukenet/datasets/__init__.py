"""Training data from the market's labelled outcomes, in the formats TRL's trainers read."""
