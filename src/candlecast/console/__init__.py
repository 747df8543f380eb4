"""The operator's console: a live web dashboard (``candlecast dashboard``) and a Telegram bot
(``candlecast telegram``) over the trader's state, the MLflow registry and the ops outputs.

Viewing is read-only and open on localhost; pause / resume / kill go through the same flag
files as ``candlecast trade pause|resume|kill`` and need the control token
(:mod:`candlecast.common.auth`). See ``docs/console.md``.
"""
