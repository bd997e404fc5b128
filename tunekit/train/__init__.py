"""Training with torch, without Ray: datasets, models, schedules, the loop, checkpoints."""
