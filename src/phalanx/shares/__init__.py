"""Pure share computation: throughput -> integer samples per participant."""
