"""GraphiQL in headless Chromium with the network cut off.

``c360 demo`` runs as a user starts it (sandboxes, issuer and gateway on
127.0.0.1); Debian's chromium, driven by Playwright, opens its GraphiQL page
while every request to anything but 127.0.0.1 is aborted, pastes a bearer
token into the Headers tab, runs a query for a real customer and reads the
answer off the result panel. Screenshots land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Route,
    expect,
    sync_playwright,
)

from connectors.sdk.testing.server import free_port
from gateway.issuer import fetch_token
from tests.servers import wait_ready

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Recorded in the page before any of its own scripts run: what the page's
# Content-Security-Policy refused (a blocked script would be silent otherwise).
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class Demo:
    url: str
    sandbox_url: str
    log: Path


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (.ci/run installs it, so CI must run this test)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``c360 demo`` as a subprocess, every port chosen free on 127.0.0.1."""
    port, sandbox_port, issuer_port = free_port(), free_port(), free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "demo",
                "--port",
                str(port),
                "--sandbox-port",
                str(sandbox_port),
                "--issuer-port",
                str(issuer_port),
                "--customers",
                "200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/healthz", proc)
        yield Demo(url=url, sandbox_url=f"http://127.0.0.1:{sandbox_port}", log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Watch:
    """Everything the page asked for, refused, failed at or complained about."""

    requests: list[Request] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bad_status: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def _loopback_only(watch: Watch) -> Any:
    def handle(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.blocked.append(url)
            route.abort("blockedbyclient")

    return handle


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # a fresh user-data dir
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def _watched_page(context: BrowserContext) -> tuple[Page, Watch]:
    watch = Watch()
    context.route("**/*", _loopback_only(watch))
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("request", lambda r: watch.requests.append(r))
    page.on("requestfailed", lambda r: watch.failed.append(f"{r.url}: {r.failure}"))
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.console_errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)

    def response(resp: Any) -> None:
        # Before a token is pasted, GraphiQL's introspection POST is a 401: expected.
        if resp.request.method == "GET" and resp.status >= 400:
            watch.bad_status.append(f"{resp.status} {resp.url}")

    page.on("response", response)
    return page, watch


def _fill_editor(page: Page, editor: Any, text: str) -> None:
    """Replace an editor's text as a paste does (no auto-closed brackets)."""
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


def _customer(sandbox_url: str) -> dict[str, Any]:
    people = httpx.get(f"{sandbox_url}/_sandbox/customers", params={"limit": 200}).json()
    return next(p for p in people["customers"] if p["in_all"] and p["name"])


def test_graphiql_runs_a_query_with_a_pasted_token_and_no_network(
    demo: Demo, browser: BrowserContext
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    person = _customer(demo.sandbox_url)
    token = fetch_token("admin", gateway=demo.url, mfa=True)
    page, watch = _watched_page(browser)

    page.goto(f"{demo.url}/graphql")
    execute = page.locator(".graphiql-execute-button")
    expect(execute).to_be_visible()
    expect(page.locator("#graphiql")).not_to_contain_text("Loading...")
    page.screenshot(path=ARTIFACTS / "graphiql-loaded.png")

    page.get_by_role("button", name="Headers", exact=True).click()
    headers = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
    _fill_editor(page, headers, json.dumps({"Authorization": f"Bearer {token}"}))
    # The schema is fetched again with the pasted token: the docs work offline too.
    page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = page.locator(".graphiql-doc-explorer")
    expect(docs).to_contain_text("Root Types")
    expect(docs).to_contain_text("Customer")
    query = "\n".join(
        [
            "{",
            f"  customer(email: {json.dumps(person['email'])}) {{",
            "    name",
            "    email",
            "    sources { system }",
            "  }",
            "}",
        ]
    )
    _fill_editor(page, page.locator(".graphiql-query-editor .CodeMirror"), query)
    with page.expect_response(
        lambda r: (
            r.request.method == "POST"
            and urlsplit(r.url).path == "/graphql"
            and "customer(" in (r.request.post_data or "")
        )
    ) as answered:
        execute.click()
    assert answered.value.status == 200
    assert answered.value.request.headers.get("authorization") == f"Bearer {token}"

    result = page.locator(".graphiql-response")
    expect(result).to_contain_text(person["email"])
    expect(result).to_contain_text(person["name"])
    for system in ("salesforce", "zendesk", "stripe", "mailchimp"):
        expect(result).to_contain_text(system)
    expect(result).not_to_contain_text('"errors"')
    page.screenshot(path=ARTIFACTS / "graphiql-result.png")

    assert watch.blocked == [], "the page reached past 127.0.0.1"
    assert watch.failed == [] and watch.bad_status == []
    assert watch.page_errors == []
    # The only complaints: the schema fetches made before a token was pasted.
    assert [e for e in watch.console_errors if "status of 401" not in e] == []
    assert page.evaluate("window.__cspViolations") == []
    asked = {urlsplit(r.url).path for r in watch.requests if r.method == "GET"}
    assert "/graphql" in asked and any(p.startswith("/graphiql/") for p in asked), asked


def test_a_file_that_does_not_load_is_named_on_the_page(
    demo: Demo, browser: BrowserContext
) -> None:
    page, watch = _watched_page(browser)
    page.route("**/graphiql/graphiql-3.8.3.min.js", lambda route: route.abort("failed"))
    page.goto(f"{demo.url}/graphql")
    expect(page.locator("#graphiql")).to_have_text(
        "GraphiQL could not start: GraphiQL did not load (see the browser console)."
    )
    assert watch.blocked == []
