"""Monitoring: pure drift and decay checks (``drift``), the Evidently report (``report``) and the
alerts (``alerts``: the webhook notifier the ops flows and the trader send to, a service probe);
their thresholds in ``config``. Import the submodules you need: this package imports nothing
(``config`` is read by every command through ``candlecast.config``, and ``drift`` pulls in
scipy.stats, about a second).

See docs/operations.md.
"""
