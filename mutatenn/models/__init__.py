"""Models that ship with MutateNN."""
