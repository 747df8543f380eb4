"""Store URIs relative to the project root, made absolute the one way every caller needs."""

from __future__ import annotations

from pathlib import Path

_SQLITE = "sqlite:///"


def absolute_sqlite_uri(uri: str, root: Path) -> str:
    """A relative ``sqlite:///`` URI (``sqlite:///mlruns.db``) with its path taken from
    ``root``; absolute ones (``sqlite:////abs/path``, ``~`` expanded) and other schemes
    (``http://``, ``file:``) unchanged."""
    if not uri.startswith(_SQLITE) or uri.startswith(_SQLITE + "/"):
        return uri
    path = Path(uri.removeprefix(_SQLITE)).expanduser()
    return f"{_SQLITE}{path if path.is_absolute() else (root / path).resolve()}"
