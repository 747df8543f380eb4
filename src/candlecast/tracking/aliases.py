"""The ``champion`` alias with a history: every move is recorded as model-version tags, so
"the previous champion" is well defined and ``rollback`` can restore it.

Tags on a version that became champion: ``ops.previous_champion`` (the version it replaced,
empty for the first), ``ops.champion_since``, ``ops.champion_reason``; on the replaced one
``ops.champion_until``. A rollback moves the alias back to ``ops.previous_champion`` of the
current champion WITHOUT touching the restored version's own tags, so rolling back twice walks
further back. The registered model keeps the last moves in ``ops.champion_history`` (JSON).
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.exceptions import MlflowException

from candlecast.common.time import utc_now_iso

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "ops.champion_history"
HISTORY_LENGTH = 20


def alias_version(client: Any, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _append_history(client: Any, name: str, entry: dict[str, str]) -> None:
    model = client.get_registered_model(name)
    try:
        history = json.loads(model.tags.get(HISTORY_TAG, "[]"))
    except json.JSONDecodeError:
        history = []
    history = [*history, entry][-HISTORY_LENGTH:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))


def move_champion(client: Any, name: str, version: str, reason: str, actor: str,
                  when: str | None = None) -> str | None:
    """Point ``champion`` at ``version`` and record the move; returns the replaced version."""
    when = when or utc_now_iso()
    previous = alias_version(client, name, CHAMPION)
    if previous == str(version):
        return previous
    client.set_model_version_tag(name, version, "ops.previous_champion", previous or "")
    client.set_model_version_tag(name, version, "ops.champion_since", when)
    client.set_model_version_tag(name, version, "ops.champion_reason", reason[:4000])
    if previous is not None:
        client.set_model_version_tag(name, previous, "ops.champion_until", when)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    if alias_version(client, name, CHALLENGER) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    _append_history(client, name, {"action": "promote", "version": str(version),
                                   "previous": previous or "", "when": when, "by": actor,
                                   "reason": reason[:300]})
    return previous


def mark_challenger(client: Any, name: str, version: str) -> None:
    client.set_registered_model_alias(name, CHALLENGER, str(version))


def rollback(client: Any, name: str, reason: str, when: str | None = None) -> dict[str, str]:
    """Restore the previous champion; raises ``ValueError`` if none is recorded."""
    when = when or utc_now_iso()
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise ValueError(f"registered model {name!r} has no champion to roll back")
    tags = client.get_model_version(name, current).tags
    previous = tags.get("ops.previous_champion", "")
    if not previous:
        raise ValueError(
            f"champion v{current} of {name!r} has no recorded previous champion "
            "(ops.previous_champion): nothing to roll back to"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, current, "ops.rolled_back_at", when)
    client.set_model_version_tag(name, current, "ops.rolled_back_reason", reason[:4000])
    client.set_model_version_tag(name, current, "ops.champion_until", when)
    client.set_model_version_tag(name, previous, "ops.restored_at", when)
    _append_history(client, name, {"action": "rollback", "version": previous,
                                   "previous": current, "when": when, "by": "rollback",
                                   "reason": reason[:300]})
    return {"champion": previous, "rolled_back": current}


def champion_history(client: Any, name: str) -> list[dict[str, str]]:
    model = client.get_registered_model(name)
    return list(json.loads(model.tags.get(HISTORY_TAG, "[]")))
