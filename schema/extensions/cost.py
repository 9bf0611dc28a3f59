"""Maximum cost: how many objects a response may hold, judged before anything resolves.

Every object-typed field costs 1 per object; a list multiplies its items by
its length. The length is the one the client asked for where an argument
bounds it -- the list given to ``customers(ids:|emails:)``, ``first`` on a
page or on ``activity`` -- else ``HardeningLimits.list_sizes`` / its
``default_list_size``. ``first`` on a connection sizes its ``edges``.

Lengths may come from variables, so the check runs as execution starts. Each
document (per query text and operation) is compiled once into a plan whose
variable-free parts are already summed; a request only fills in its variables.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    get_operation_ast,
    is_composite_type,
    is_list_type,
)
from strawberry.extensions import SchemaExtension

from schema.extensions._errors import COST, limit_error
from schema.extensions._limits import HardeningLimits
from schema.extensions._plan import Length, Plan, Size, evaluate, plus, times

__all__ = ["CostAnalyzer", "CostLimit"]

_PAGE_ARGUMENTS = ("first", "last")
# No page of the schema holds more than this: a larger ``first`` is refused by
# its field ("first must be between 1 and 50"), so it costs no more than this.
_PAGE_CAP = 100
_PLANS = 256


def _literal_int(node: ValueNode | None) -> int | None:
    if isinstance(node, IntValueNode):
        return max(int(node.value), 0)
    return None


class _Compiler:
    def __init__(
        self,
        schema: GraphQLSchema,
        limits: HardeningLimits,
        document: DocumentNode,
        operation: OperationDefinitionNode,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.defaults = {
            v.variable.name.value: v.default_value for v in operation.variable_definitions or ()
        }
        self.memo: dict[tuple[str, Size | None], Plan] = {}
        self.active: set[str] = set()

    def selections(
        self, node: SelectionSetNode | None, parent: GraphQLNamedType | None, page: Size | None
    ) -> Plan:
        if node is None or parent is None:
            return 0
        parts: list[Plan] = []
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                parts.append(self.field(selection, parent, page))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                parts.append(self.selections(selection.selection_set, target, page))
            elif isinstance(selection, FragmentSpreadNode):
                parts.append(self.spread(selection.name.value, page))
        return plus(parts)

    def spread(self, name: str, page: Size | None) -> Plan:
        key = (name, page)
        if key in self.memo:
            return self.memo[key]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.active:
            return 0  # the spec rules reject unknown fragments and cycles
        self.active.add(name)
        target = self.schema.get_type(fragment.type_condition.name.value)
        plan = self.selections(fragment.selection_set, target, page)
        self.active.discard(name)
        self.memo[key] = plan
        return plan

    def field(self, node: FieldNode, parent: GraphQLNamedType, page: Size | None) -> Plan:
        name = node.name.value
        if name.startswith("__") or not isinstance(
            parent, (GraphQLObjectType, GraphQLInterfaceType)
        ):
            return 0  # introspection is refused or bounded by its own rules
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        returns = get_nullable_type(definition.type)
        named = get_named_type(returns)
        own = 1 if is_composite_type(named) else 0
        requested = self.page_size(node, definition)
        if not is_list_type(returns):
            # A connection's `first` sizes its `edges`, one level down.
            children = self.selections(node.selection_set, named, requested)
            return plus([own, children])
        children = self.selections(node.selection_set, named, None)
        size = self.list_argument_size(node, definition)
        if size is None:
            size = requested if requested is not None else page
        if size is None:
            size = self.limits.list_size(parent.name, name)
        return times(size, plus([own, children]))

    def variable_size(self, variable: str, counts_items: bool, fallback: int) -> Size:
        default = self.defaults.get(variable)
        if default is not None:
            fallback = self.literal_size(default, counts_items, fallback)
        return Length(variable, counts_items, fallback)

    @staticmethod
    def literal_size(value: ValueNode, counts_items: bool, fallback: int) -> int:
        if isinstance(value, NullValueNode):
            return fallback
        if counts_items:
            return len(value.values) if isinstance(value, ListValueNode) else 1
        found = _literal_int(value)
        return fallback if found is None else found

    def list_argument_size(self, node: FieldNode, definition: GraphQLField) -> Size | None:
        sizes: list[Size] = []
        for argument in node.arguments or ():
            spec = definition.args.get(argument.name.value)
            if spec is not None and is_list_type(get_nullable_type(spec.type)):
                sizes.append(self.size_of(argument.value, True, 0))
        if not sizes:
            return None
        literal = [s for s in sizes if isinstance(s, int)]
        # Resolvers accept one list argument (ids or emails); with several,
        # the literal ones are known and the longest is the honest guess.
        return max(literal) if len(literal) == len(sizes) else sizes[0]

    def page_size(self, node: FieldNode, definition: GraphQLField) -> Size | None:
        for name in _PAGE_ARGUMENTS:
            spec: GraphQLArgument | None = definition.args.get(name)
            if spec is None:
                continue
            default = spec.default_value
            fallback: int | None = None
            if isinstance(default, int) and not isinstance(default, bool):
                fallback = default
            for argument in node.arguments or ():
                if argument.name.value == name:
                    size = self.size_of(argument.value, False, fallback)
                    if isinstance(size, Length):
                        return replace(size, cap=_PAGE_CAP)
                    return min(size, _PAGE_CAP)
            if fallback is not None:
                return fallback
        return None

    def size_of(self, value: ValueNode, counts_items: bool, fallback: int | None) -> Size:
        default = self.limits.default_list_size if fallback is None else fallback
        if isinstance(value, VariableNode):
            return self.variable_size(value.name.value, counts_items, default)
        return self.literal_size(value, counts_items, default)


class CostAnalyzer:
    """Compiles and caches cost plans; one per schema's hardening setup."""

    def __init__(self, limits: HardeningLimits) -> None:
        self.limits = limits
        self._plans: OrderedDict[tuple[int, str, str | None], Plan] = OrderedDict()

    def plan(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        query: str | None,
    ) -> Plan:
        name = operation.name.value if operation.name else None
        key = (id(schema), query, name) if query is not None else None
        if key is not None and (plan := self._plans.get(key)) is not None:
            self._plans.move_to_end(key)
            return plan
        compiler = _Compiler(schema, self.limits, document, operation)
        plan = compiler.selections(
            operation.selection_set, schema.get_root_type(operation.operation), None
        )
        if key is not None:
            self._plans[key] = plan
            if len(self._plans) > _PLANS:
                self._plans.popitem(last=False)
        return plan

    def cost(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None = None,
        *,
        query: str | None = None,
    ) -> int:
        """The operation's cost; ``query`` (the document's text) keys the plan cache."""
        plan = self.plan(schema, document, operation, query)
        return evaluate(plan, variables or {}, {})


class CostLimit(SchemaExtension):
    def __init__(self, analyzer: CostAnalyzer) -> None:
        self.analyzer = analyzer

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document else None
        if document is not None and operation is not None and not context.result:
            limit = self.analyzer.limits.max_cost
            variables = context.variables if isinstance(context.variables, Mapping) else None
            try:
                cost = self.analyzer.cost(
                    context.schema._schema, document, operation, variables, query=context.query
                )
                message = f"the query could cost {cost}; the limit is {limit}"
            except RecursionError:
                cost, message = limit + 1, f"the query nests too deeply to cost (limit {limit})"
            if cost > limit:
                error = limit_error(COST, message, nodes=operation, limit=limit, cost=cost)
                # A result set before execution is returned instead of executing.
                context.result = ExecutionResult(data=None, errors=[error])
        yield
