"""Silent-data-corruption guard: gradient sanity, parameter fingerprints, ABFT checks."""
