"""References for tests: never imported by production code."""
