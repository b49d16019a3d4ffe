"""Canary analysis: what was measured (counts), the judge (pure statistics) and the step policy."""
