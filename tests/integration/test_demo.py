"""`c360 demo` is one command: sandboxes + issuer + gateway. It prints its
banner only once every server listens, takes the ports it is given or fails in
one line, and the example it prints (and every example in the README) works."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.sdk.testing.server import free_port
from tests.servers import gateway_process, sandbox_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    banner: str

    def url(self, name: str) -> str:
        found = re.search(rf"^  {name}:\s+(http://\S+?)(?:/graphql)?(?:\s|$)", self.banner, re.M)
        assert found, (name, self.banner)
        return found.group(1)

    @property
    def tokens(self) -> dict[str, str]:
        return dict(re.findall(r"^  (\w+): (ey[\w.-]+)$", self.banner, re.M))

    def gql(self, query: str, role: str = "admin", **variables: Any) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url('GraphQL')}/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {self.tokens[role]}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


def _lines(stream: Any, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@contextmanager
def demo(*args: str, command: list[str] | None = None, cwd: Path = ROOT) -> Iterator[Demo]:
    """The demo (or ``command``, e.g. make) in its own process group; yields once
    the banner is read up to its last line (the example's curl)."""
    argv = command or [sys.executable, "-m", "gateway.cli", "demo", *args]
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        banner = []
        while not banner or not banner[-1].startswith("curl "):
            line = lines.get(timeout=90)
            assert line is not None, f"the demo ended: {''.join(banner)}{proc.stderr.read()}"
            banner.append(line)
        yield Demo(proc, "".join(banner))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def _listening(sock: socket.socket) -> socket.socket:
    sock.listen()
    return sock


def _taken() -> socket.socket:
    """A port some other program listens on."""
    return _listening(socket.create_server(("127.0.0.1", 0)))


def _pair() -> tuple[int, socket.socket]:
    """A free port P and a listening socket on P + 1."""
    for _ in range(50):
        port = free_port()
        try:
            return port, _listening(socket.create_server(("127.0.0.1", port + 1)))
        except OSError:
            continue
    raise AssertionError("no free pair of ports")


EXAMPLE_CHECK = """query($email: String!) { customer(email: $email) {
  email sources { system } account { name } tickets { id }
  subscriptions { status } invoices { status subscriptionId: id }
  marketing { lists { id } } } }"""


def test_the_banner_comes_once_every_server_listens_and_its_example_works():
    with demo("--port", str(free_port()), "--customers", "200") as d:
        # Right after the banner, each server answers at the first try.
        assert httpx.get(f"{d.url('GraphQL')}/healthz").status_code == 200
        assert httpx.get(f"{d.url('sandbox')}/_sandbox/stats").status_code == 200
        issuer = d.url("issuer")
        assert httpx.get(f"{issuer}/.well-known/openid-configuration").json()["issuer"] == issuer
        assert set(d.tokens) >= {"support_agent", "marketing", "billing_admin", "admin"}
        assert "fixed, public development keys" in d.banner
        printed = d.banner
        variables = json.loads(printed.rsplit("variables:", 1)[1].split("\n\n")[0])
        query = re.search(r"(query Customer360.*?\n})", printed, re.S).group(1)
        graphql = f"{d.url('GraphQL')}/graphql"
        anonymous = httpx.post(graphql, json={"query": query, "variables": variables})
        assert anonymous.status_code == 401
        body = d.gql(query, **variables)
        assert "errors" not in body, body
        customer = body["data"]["customer"]
        assert customer["email"] == variables["email"]
        assert {s["system"] for s in customer["sources"]} == {
            "salesforce", "zendesk", "stripe", "mailchimp"
        }  # fmt: skip
        # A full, consistent profile: an account, tickets, lists, an active
        # subscription with its paid invoices, nothing owed.
        assert customer["account"]["name"] and customer["tickets"]
        assert customer["marketing"]["lists"]
        assert {s["status"] for s in customer["subscriptions"]} == {"active"}
        assert customer["invoices"] and "paid" in {i["status"] for i in customer["invoices"]}
        assert not {"open", "uncollectible"} & {i["status"] for i in customer["invoices"]}
        ide = httpx.get(graphql, headers={"accept": "text/html"})
        assert ide.status_code == 200 and "graphiql" in ide.text.lower()


def test_a_named_port_that_is_taken_is_one_line_and_exit_2():
    with _taken() as held:
        port = held.getsockname()[1]
        for flag in ("--port", "--sandbox-port", "--issuer-port"):
            done = subprocess.run(
                [sys.executable, "-m", "gateway.cli", "demo", flag, str(port)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2
            assert done.stdout == ""  # no banner, no tokens
            assert done.stderr == (
                f"c360 demo: port {port} is in use ({flag} {port}); "
                f"name another, or leave {flag} out to use a free one\n"
            )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--redis-url", "notaurl"], "c360 demo: --redis-url is not a usable Redis URL "),
        (["--faults", "{bad"], "c360 demo: --faults: Expecting property name "),
        (["--faults", '{"acme": {"status": 500}}'], "c360 demo: --faults: "),
        (["--host", "192.0.2.1"], "c360 demo: cannot listen on 192.0.2.1 (--port): "),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, line):
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--customers", "20", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr


def test_the_issuer_follows_the_sandbox_port_or_takes_a_free_one():
    sandbox, held = _pair()
    with held:
        args = ("--port", str(free_port()), "--sandbox-port", str(sandbox), "--customers", "50")
        with demo(*args) as d:
            # sandbox + 1 is taken: another port, which answers.
            issuer = d.url("issuer")
            assert issuer != f"http://127.0.0.1:{sandbox + 1}"
            assert httpx.get(f"{issuer}/jwks.json").status_code == 200
            assert d.gql("{ __typename }")["data"] == {"__typename": "Query"}
    with demo("--port", str(free_port()), "--sandbox-port", str(sandbox), "--customers", "50") as d:
        assert d.url("issuer") == f"http://127.0.0.1:{sandbox + 1}"


def test_ctrl_c_stops_every_server_quietly():
    with demo("--port", str(free_port()), "--customers", "50") as d:
        urls = [f"{d.url('GraphQL')}/healthz", f"{d.url('sandbox')}/_sandbox/stats"]
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(timeout=20) == 0
        assert "Traceback" not in d.proc.stderr.read()
        for url in urls:
            with pytest.raises(httpx.ConnectError):
                httpx.get(url)


def test_make_demo_takes_its_ports():
    port, sandbox, issuer = free_port(), free_port(), free_port()
    venv = Path(sys.executable).parent.parent
    # The demo target as written; only the install step is taken as done.
    command = ["make", "--no-print-directory", "-o", f"{venv}/bin/c360", f"VENV={venv}", "demo",
               f"PORT={port}", f"SANDBOX_PORT={sandbox}", f"ISSUER_PORT={issuer}"]  # fmt: skip
    with demo(command=command) as d:
        assert d.url("GraphQL") == f"http://127.0.0.1:{port}"
        assert d.url("sandbox") == f"http://127.0.0.1:{sandbox}"
        assert d.url("issuer") == f"http://127.0.0.1:{issuer}"
        assert "errors" not in d.gql("{ __typename }")


README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def _has_data(value: Any) -> bool:
    if isinstance(value, dict) and "edges" in value:
        return bool(value["edges"]) and all(_has_data(e["node"]) for e in value["edges"])
    if isinstance(value, list):
        return bool(value) and all(_has_data(v) for v in value)
    return value is not None


def test_every_readme_example_returns_data_in_the_demo_world():
    queries = _blocks("graphql")
    assert len(queries) >= 2
    # Each lookup the README's table shows with a value is one of the examples run.
    for expression in re.findall(r"^\| `(\w+\([^`]*:[^`]*\))`", README, re.M):
        given = re.split(r",? ?\w+: …|…|\.\.\.", expression)[0]  # up to a placeholder
        assert any(given in q for q in queries), expression
    with demo("--port", str(free_port())) as d:  # the world `make demo` serves
        email = json.loads(d.banner.rsplit("variables:", 1)[1].split("\n\n")[0])["email"]
        assert f'$email: String! = "{email}"' in queries[0]  # the example the demo prints
        for query in queries:
            body = d.gql(query)
            assert "errors" not in body, (query, body)
            for name, value in body["data"].items():
                assert _has_data(value), (name, value)
        # Each change the sandboxes section lists is made and its webhook delivered.
        changes = [json.loads(line) for line in _blocks("json")[0].splitlines()]
        assert {c["vendor"] for c in changes} == {"salesforce", "zendesk", "stripe", "mailchimp"}
        for change in changes:
            answer = httpx.post(f"{d.url('sandbox')}/_sandbox/mutate", json=change, timeout=30)
            assert answer.status_code == 200, (change, answer.text)
            deliveries = answer.json()["deliveries"]
            assert deliveries and all(x["delivered"] for x in deliveries), (change, deliveries)
        # ...and the gateway shows it at once: the webhook evicted what it changed.
        tickets = d.gql("query($e: String!) { customer(email: $e) { tickets { subject } } }",
                        e=email)["data"]["customer"]["tickets"]  # fmt: skip
        assert "Printer on fire" in {t["subject"] for t in tickets}


def test_the_readme_way_to_serve_against_the_sandbox_works(tmp_path):
    [script] = [b for b in _blocks("sh") if "c360.sandbox.yaml" in b]
    [config] = [b for b in _blocks("yaml") if b.startswith("# c360.sandbox.yaml")]
    exports = "\n".join(line for line in script.splitlines() if not line.startswith("c360 "))
    # The README's own shell lines make the environment (keys included).
    shell = subprocess.run(["bash", "-c", f"set -e\n{exports}\nenv -0"], env={"PATH": os.environ["PATH"]},
                           capture_output=True, text=True, check=True)  # fmt: skip
    env = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    assert len(env["C360_ID_KEY"]) == 43 and env["C360_ID_KEY"] != env["C360_AUDIT_KEY"]
    with sandbox_process(customers=50, seed=42) as sandbox:
        path = tmp_path / "c360.sandbox.yaml"
        audit = tmp_path / "audit.jsonl"
        path.write_text(config.replace("http://127.0.0.1:8700", sandbox)
                        .replace("/tmp/c360-sandbox-audit.jsonl", str(audit)))  # fmt: skip
        with gateway_process(path, {k: v for k, v in env.items() if k != "PATH"}) as url:
            email = httpx.get(f"{sandbox}/_sandbox/customers?limit=1").json()["customers"][0]
            query = "query($e: String!) { customer(email: $e) { email sources { system } } }"
            body = httpx.post(f"{url}/graphql", json={"query": query,
                              "variables": {"e": email["email"]}}).json()  # fmt: skip
            assert "errors" not in body, body
            assert len(body["data"]["customer"]["sources"]) == 4
        assert audit.exists()
