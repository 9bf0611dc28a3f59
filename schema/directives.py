"""Schema directives that show field access in the printed SDL.

``@auth(requires: ["billing:read"])`` names the scopes a field needs;
``@pii(kind: EMAIL, sensitive: false)`` marks personal data the policy may
mask or hide (its kind is the canonical model's, see ``connectors.sdk.pii``);
``@piiFromRecord`` marks a field whose value is personal data only for some
records, of the kind the record says (a conflict's value, an id derived from
an email). They only describe: :class:`schema.permissions.Guard`, on the same
field, enforces them (``gateway.policy`` decides).
"""

from __future__ import annotations

import strawberry
from strawberry.schema_directive import Location

from gateway.policy import PiiKind, PiiRule

__all__ = ["Auth", "Pii", "PiiFromRecord", "PiiKind"]

strawberry.enum(
    PiiKind,
    description="What kind of personal data a field holds; decides how it is masked.",
)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="auth",
    description="The principal needs every one of these scopes, or the field is FORBIDDEN.",
)
class Auth:
    requires: list[str]


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="pii",
    description=(
        "Personal data: shown in full, masked or hidden as the principal's role says; "
        "a sensitive field also needs the pii:sensitive scope and an MFA login to show in full."
    ),
)
class Pii:
    kind: PiiKind
    sensitive: bool = False

    @property
    def rule(self) -> PiiRule:
        return PiiRule(self.kind, self.sensitive)


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="piiFromRecord",
    description=(
        "Personal data for some records, of the kind the record says (a conflicting "
        "phone, an id derived from an email): treated like @pii of that kind when it is."
    ),
)
class PiiFromRecord:
    pass
