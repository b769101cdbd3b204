"""The evaluation layer: models' lists scored against held-out truth (per-customer metrics inside
Spark tasks), the comparison table and the report. It never imports a model, and serving never
imports it."""
