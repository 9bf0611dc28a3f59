"""Measure operations with their fragments expanded, each fragment measured once.

Walking every spread of a fragment anew is exponential: ten fragments that
each spread the next ten times are a few hundred bytes and ten billion
visits. strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter`` walk that
way (2.6 s for six such levels), so the rules here use this walk instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

__all__ = ["DocumentTooNested", "measure_operations"]

FieldMeasure = Callable[[FieldNode, Callable[[], int]], int]


class DocumentTooNested(Exception):
    """Fragments nest past what the interpreter can walk."""


def measure_operations(
    document: DocumentNode, field: FieldMeasure, combine: Callable[[Iterable[int]], int]
) -> Iterator[tuple[OperationDefinitionNode, int]]:
    """Each operation with its measure.

    ``field(node, children)`` measures one field; ``children()`` measures its
    selection set. ``combine`` folds the measures of sibling selections.
    Unknown fragments and fragment cycles (rejected by the spec rules) count
    as empty.
    """
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    memo: dict[str, int] = {}
    active: set[str] = set()

    def spread(name: str) -> int:
        if name in memo:
            return memo[name]
        fragment = fragments.get(name)
        if fragment is None or name in active:
            return 0
        active.add(name)
        value = selections(fragment.selection_set)
        active.discard(name)
        memo[name] = value
        return value

    def selections(selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return combine(())
        return combine(selection(s) for s in selection_set.selections)

    def selection(node: object) -> int:
        if isinstance(node, FieldNode):
            return field(node, lambda: selections(node.selection_set))
        if isinstance(node, InlineFragmentNode):
            return selections(node.selection_set)
        if isinstance(node, FragmentSpreadNode):
            return spread(node.name.value)
        return combine(())

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            try:
                yield definition, selections(definition.selection_set)
            except RecursionError:
                # Not `from exc`: the error would keep a thousand frames alive.
                raise DocumentTooNested from None
