"""One module per rollout step; each loads the rollout, checks the event applies, acts, writes once."""
