"""Pure data slicing: which samples each participant computes in each step."""
