"""Operations: the drift-gated champion/challenger loop, alias history and rollback, alerts,
and the replayed "new" period. Pure decisions (``bootstrap``, ``promotion``, ``windows``) take
values and return values; MLflow, files and HTTP are at the edges (``aliases``, ``alerts``,
``replay``, ``drift_check``, ``retrain``). See docs/operations.md."""
