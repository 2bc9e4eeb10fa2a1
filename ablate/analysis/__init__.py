"""Reading results: a sweep's runs as tables (``tables``), the statistics over seeds (``stats``), the claims'
verdicts (``verdicts``), plots (``plots``) and the report (``report``).

May import: ``ablate.config``, ``ablate.errors``, ``ablate.tracking`` (its records and queries, not MLflow itself);
numpy, pandas, scipy, matplotlib (its object API: no pyplot state). Never torch: a report reads numbers, it trains
nothing.
"""
