"""The step loop: local (one process) and fleet (torchft) modes share one code path."""
