"""pytest plugin of the contract kit (registered through the ``pytest11`` entry point).

It declares the ``contract`` marker and the fixtures the suite in
:mod:`connectors.sdk.testing.contract` runs on: the vendor sandbox as a real
server on 127.0.0.1 (one per test class) and a connector pointed at it. A
connector's tests pull the suite in with one line::

    TestStripeContract = contract_for("stripe")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from connectors.sdk.base import Connector, ConnectorSettings
from connectors.sdk.sandbox import SANDBOX_CREDENTIALS, SandboxState, load_vendor_app
from connectors.sdk.testing.server import serve_in_thread
from connectors.sdk.world import World

__all__ = ["contract_base_url", "contract_connector", "contract_state", "pytest_configure"]


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "contract: the c360 connector contract suite")


@pytest.fixture(scope="class")
def contract_state(request: pytest.FixtureRequest) -> SandboxState:
    cls = request.cls
    return SandboxState(World(customers=cls.customers, seed=cls.seed))


@pytest.fixture(scope="class")
def contract_base_url(
    request: pytest.FixtureRequest, contract_state: SandboxState
) -> Iterator[str]:
    with serve_in_thread(load_vendor_app(request.cls.vendor, contract_state)) as url:
        yield url


@pytest.fixture
async def contract_connector(
    request: pytest.FixtureRequest, contract_base_url: str
) -> AsyncIterator[Connector]:
    from connectors.sdk.testing.contract import connector_class

    vendor = request.cls.vendor
    built = connector_class(vendor)(
        ConnectorSettings(base_url=contract_base_url, credentials=SANDBOX_CREDENTIALS[vendor])
    )
    yield built
    await built.close()
