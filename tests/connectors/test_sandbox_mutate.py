"""``/_sandbox/mutate``: every vendor lists the changes it makes, each listed
example works, and a spec missing what its shape needs is refused saying what
that is (never ``no such Contact: None``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.sdk.sandbox import SandboxState, create_combined_app
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World

pytestmark = pytest.mark.integration

VENDORS = ("salesforce", "zendesk", "stripe", "mailchimp")


@pytest.fixture
def sandbox() -> Iterator[str]:
    state = SandboxState(World(60, seed=5))
    with serve_in_thread(create_combined_app(state, VENDORS)) as url:
        yield url


def _shapes(sandbox: str) -> dict[str, list[dict[str, Any]]]:
    answer = httpx.get(f"{sandbox}/_sandbox/mutate")
    assert answer.status_code == 200
    shapes: dict[str, list[dict[str, Any]]] = answer.json()
    return shapes


def test_every_vendor_lists_its_changes_and_each_example_works(sandbox):
    shapes = _shapes(sandbox)
    assert sorted(shapes) == sorted(VENDORS)
    kinds = {v: sorted({s["kind"] for s in listed}) for v, listed in shapes.items()}
    assert kinds == {"salesforce": ["contact"], "zendesk": ["ticket", "user"],
                     "stripe": ["customer", "invoice"], "mailchimp": ["member"]}  # fmt: skip
    for vendor, listed in shapes.items():
        for shape in listed:
            example = shape["example"]
            assert example["vendor"] == vendor and example["kind"] == shape["kind"]
            assert set(shape["needs"]) <= set(example) and shape["sets"] in example
            assert set(example[shape["sets"]]) <= set(shape["fields"])
            answer = httpx.post(f"{sandbox}/_sandbox/mutate", json=example)
            assert answer.status_code == 200, (example, answer.text)
            assert answer.json()["vendor"] == vendor and answer.json()["events"]


def test_a_spec_missing_what_its_shape_needs_says_what_with_an_example(sandbox):
    for vendor, listed in _shapes(sandbox).items():
        for shape in listed:
            for key in [*shape["needs"], shape["sets"]]:
                spec = {k: v for k, v in shape["example"].items() if k != key}
                if key == shape["sets"]:  # a ticket's other shape would match otherwise
                    spec[key] = {}
                answer = httpx.post(f"{sandbox}/_sandbox/mutate", json=spec)
                assert answer.status_code == 400, spec
                message = answer.json()["message"]
                assert message.startswith(f"a {vendor} {shape['kind']} mutation needs '{key}': ")
                assert "None" not in message.split("; e.g.")[0]
                example = json.loads(message.split("; e.g. ", 1)[1])
                assert example["vendor"] == vendor and example["kind"] == shape["kind"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"vendor": "salesforce", "changes": {"Phone": "1"}},
         "a salesforce mutation's 'kind' is 'contact', not None; e.g. "),
        ({"vendor": "stripe", "kind": "charge", "id": "ch_1", "changes": {"x": 1}},
         "a stripe mutation's 'kind' is 'customer' or 'invoice', not 'charge'; e.g. "),
        ({"vendor": "salesforce", "kind": "contact", "changes": {"Phone": "1"}},
         "a salesforce contact mutation needs 'id': the Contact's id (003…); e.g. "),
        ({"vendor": "salesforce", "kind": "contact", "id": "003x"},
         "a salesforce contact mutation needs 'changes': an object of new values for any of "
         "FirstName, LastName, Email, Phone, Title, AccountId; e.g. "),
        ({"vendor": "mailchimp", "kind": "member", "changes": {"status": "cleaned"}},
         "a mailchimp member mutation needs 'email': the member's address"),
    ],
)  # fmt: skip
def test_refusals_word_for_word(sandbox, spec, message):
    answer = httpx.post(f"{sandbox}/_sandbox/mutate", json=spec)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(message)


def test_a_record_that_does_not_exist_is_named_as_given(sandbox):
    spec = {"vendor": "salesforce", "kind": "contact", "id": "003nobody", "changes": {"Phone": "1"}}
    answer = httpx.post(f"{sandbox}/_sandbox/mutate", json=spec)
    assert answer.status_code == 400 and answer.json()["message"] == "no such Contact: '003nobody'"
