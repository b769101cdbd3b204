"""The storage layer: Delta tables (create, upsert what changed, replace a run's rows, retried on
concurrent commits), the one quarantine writer, and the analyst views."""
