"""The role x field matrix: generated from the policy, and the README's copy kept equal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gateway.policy import BUILTIN_ROLE_SCOPES, policy_from_mapping
from schema import build_schema
from schema.roles import role_matrix

README = Path(__file__).resolve().parents[2] / "README.md"


def _row(matrix: str, field: str) -> list[str]:
    line = next(line for line in matrix.splitlines() if line.startswith(f"| `{field}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")][2:]


def test_the_readme_carries_the_built_in_matrix():
    text = README.read_text()
    found = re.search(r"<!-- roles:begin[^>]*-->\n(.*?)<!-- roles:end -->", text, re.S)
    assert found, "README.md lost its generated roles table"
    expected = role_matrix(build_schema(), policy_from_mapping(None), list(BUILTIN_ROLE_SCOPES))
    assert found.group(1) == expected, "README's roles table is stale: paste `c360 roles`"


def test_a_personal_phone_has_one_rule_wherever_it_shows():
    matrix = role_matrix(build_schema(), policy_from_mapping(None), list(BUILTIN_ROLE_SCOPES))
    roles = list(BUILTIN_ROLE_SCOPES)
    customer, contact = _row(matrix, "Customer.phone"), _row(matrix, "Contact.phone")
    assert customer == contact
    by_role = dict(zip(roles, customer, strict=True))
    assert by_role["support_agent"] == "mask"
    assert by_role["admin"] == "full*"
    assert by_role["integration"] == "-"


def test_looking_customers_up_needs_its_own_scope():
    policy = policy_from_mapping({"roles": {"viewer": {"scopes": ["crm:read", "pii:read"]}}})
    matrix = role_matrix(build_schema(), policy, ["viewer", "support_agent"])
    assert _row(matrix, "Query.customer") == ["F", "ok"]
    assert _row(matrix, "Query.searchCustomers") == ["F", "ok"]


def test_the_command_prints_a_configured_policy(tmp_path):
    config = tmp_path / "c360.yaml"
    config.write_text(
        "gateway: {insecure_no_auth: true}\n"
        "connectors: {}\n"
        "policy:\n  roles:\n    marketing: {pii: {default: masked, email: hidden}}\n"
        "    auditor: {scopes: [customers:read, crm:read], pii: hidden}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "roles", "--config", str(config)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    header = [c.strip() for c in out.splitlines()[0].strip("|").split("|")]
    assert header[-1] == "auditor"
    marketing = header.index("marketing") - 2
    assert _row(out, "Customer.email")[marketing] == "-"
    assert _row(out, "Customer.name")[marketing] == "mask"
    assert _row(out, "Customer.name")[-1] == "-"
    assert _row(out, "Customer.tickets")[-1] == "F"


def test_a_bad_config_is_a_message_not_a_traceback(tmp_path):
    config = tmp_path / "c360.yaml"
    config.write_text("gateway: {insecure_no_auth: true}\npolicy: {roles: {x: {pii: blurred}}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "roles", "--config", str(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "'blurred' is not one of" in done.stderr
    assert "Traceback" not in done.stderr
