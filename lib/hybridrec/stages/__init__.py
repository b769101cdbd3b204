"""The stages layer: one module per pipeline stage, each a ``run(spark, cfg) -> report`` whose report
has ``rows_in``, ``rows_out`` and ``lines()``, plus its preflight checks; :mod:`hybridrec.stages.registry`
lists them in pipeline order and :mod:`hybridrec.stages.pipeline` runs them as one loop."""
