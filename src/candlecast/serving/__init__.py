"""The live signal service: BentoML shell in ``bentos/``, the logic here (see docs/serving.md).

Deliberately imports nothing: ``bentos/service.py`` imports the light modules (``schemas``,
``guard``) in BentoML's arbiter process, and the heavy ones (``server``: pandas, MLflow, Feast)
only in the worker. Import the submodules directly:

* :mod:`~candlecast.serving.config` -- ``ServingConfig``, ``load_serving_config``,
  ``compose_serving_config``;
* :mod:`~candlecast.serving.server` -- ``SignalServer`` (load, ``/signal``, ``/predict``,
  ``/metadata``);
* :mod:`~candlecast.serving.model` -- the ``SignalModel`` interface, ``load_signal_model``;
* :mod:`~candlecast.serving.package` -- ``package_service`` (the ``package`` stage).
"""
