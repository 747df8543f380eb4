"""Operations: the drift-gated champion/challenger loop and the replayed "new" period. Pure
decisions (``bootstrap``, ``promotion``) take values and return values; MLflow, files and HTTP
are at the edges (``replay``, ``drift_check``, ``retrain``). The alias history lives in
``candlecast.tracking.aliases``, the alerts in ``candlecast.monitoring.alerts`` (the trader sends
them too). See docs/operations.md."""
