"""Energy: what training draws, and the controls that cut it."""
