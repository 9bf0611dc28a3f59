"""Says so in the response when a cached record was served stale.

The cache layer notes every stale value it serves (past its soft TTL while a
refresh runs, or because the upstream failed); resolvers that read through
``schema._loading.load`` add the field path. The response then carries::

    "extensions": {"stale": [{"stale": true, "source": "stripe",
                              "operation": "invoices_of_customers", "age": 42.0,
                              "path": ["customer", "invoices"]}]}
"""

from __future__ import annotations

from typing import Any

from strawberry.extensions import SchemaExtension

__all__ = ["StaleNotes"]


class StaleNotes(SchemaExtension):
    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        loaders = getattr(context, "loaders", None)
        notes = getattr(getattr(loaders, "scope", None), "stale", None)
        if not notes:
            return {}
        paths: dict[tuple[str, str, str], list[Any]] = getattr(context, "stale_paths", {})
        out = []
        for note in notes:
            entry: dict[str, Any] = {
                "stale": True,
                "source": note.source,
                "operation": note.operation,
                "age": round(note.age, 1),
            }
            path = paths.get((note.source, note.operation, note.key))
            if path is not None:
                entry["path"] = path
            out.append(entry)
        return {"stale": out}
