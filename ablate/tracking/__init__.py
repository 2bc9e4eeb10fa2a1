"""Where results go: the MLflow store (``store``: reaching it, creating it, masking passwords), workers' liveness
(``liveness``), what besides the config decides a run (``provenance``), the Tracker (``tracker``: runs, leases and
the queries the rest needs) and the process that writes runs' ends behind training (``writer``).

May import: ``ablate.config``, ``ablate.errors``, ``ablate.paths``; MLflow and SQLAlchemy (inside the functions that
use them: importing this package costs nothing). The only code of ablate that imports MLflow; never torch.
"""
