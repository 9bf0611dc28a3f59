"""pytest plugin of the contract kit (registered through the ``pytest11`` entry point).

It only declares the ``contract`` marker; the suite itself is
:class:`connectors.sdk.testing.contract.ConnectorContract`, which a connector's
tests pull in with one line::

    TestStripeContract = contract_for("stripe")
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_configure"]


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "contract: the c360 connector contract suite")
