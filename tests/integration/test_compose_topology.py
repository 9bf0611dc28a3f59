"""docker-compose.yml's topology, run as processes from its own files.

No Docker engine runs here, so every service runs as a local process from the
committed files -- the compose file's commands, environment, healthchecks and
volumes, deploy/c360.compose.yaml and deploy/nginx.conf -- with only what a
container network provides templated: each ``service:port`` becomes
127.0.0.1 and a free port, nginx's pinned address becomes 127.0.0.1 (where it
connects from here), named volumes become temporary directories. Services
start in ``depends_on`` order and each is waited for by running its own
healthcheck, as ``condition: service_healthy`` does.

The test client talks to nginx from 127.0.0.3 and to a gateway directly from
127.0.0.2, so the audit trail shows whose X-Forwarded-For was believed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from connectors.sdk.testing.server import free_port
from connectors.sdk.webhooks import sign_stripe

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.skipif(NGINX is None, reason="needs nginx (.ci/run installs it)"),
]

DEADLINE = 60.0
QUERY = """query($e: String) { customer(email: $e) {
  id email phones invoices { id status } } }"""
# What the lb service's container is reached from; here, nginx connects from 127.0.0.1.
LB_ADDRESS = SERVICES["lb"]["networks"]["default"]["ipv4_address"]
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


# ------------------------------------------------------------------ reading the compose file
def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}``, with the committed defaults (not this machine's env)."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if operator in (":-", "-"):
            return argument
        raise AssertionError(f"{name} has no default in docker-compose.yml")

    return _VARIABLE.sub(one, value)


def internal_port(name: str) -> int:
    """The port a service listens on inside its container."""
    service = SERVICES[name]
    if name == "redis":
        return 6379  # redis-server's default; the healthcheck names it too
    if name == "lb":
        return int(service["ports"][0].rpartition(":")[2])
    command = service["command"]
    return int(command[command.index("--port") + 1])


def depends_on(name: str) -> list[str]:
    return list(SERVICES[name].get("depends_on") or {})


def start_order() -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        for other in depends_on(name):
            visit(other)
        if name not in order:
            order.append(name)

    for name in SERVICES:
        visit(name)
    return order


# ------------------------------------------------------------------ running it as processes
@dataclass
class Topology:
    tmp: Path
    ports: dict[str, list[int]] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    volumes: dict[str, Path] = field(default_factory=dict)
    binds: dict[str, Path] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, name: str, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[name][replica]}"

    @property
    def gateways(self) -> list[str]:
        return [self.url("gateway", n) for n in range(len(self.ports["gateway"]))]

    # -- templating
    def localize(self, text: str) -> str:
        for name, ports in self.ports.items():
            if name != "gateway":  # only nginx names it, one line per replica
                text = text.replace(f"{name}:{internal_port(name)}", f"127.0.0.1:{ports[0]}")
        text = text.replace("0.0.0.0", "127.0.0.1").replace(LB_ADDRESS, "127.0.0.1")
        for container, host in self.mounts():
            text = text.replace(container, str(host))
        return text

    def mounts(self) -> list[tuple[str, Path]]:
        found = []
        for service in SERVICES.values():
            for volume in service.get("volumes", []):
                source, target = volume.split(":")[:2]
                host = self.binds.get(source) or ROOT / source
                found.append((target, self.volumes.get(source, host)))
        # Longest first: /etc/nginx/nginx.conf before /etc/nginx.
        return sorted(set(found), key=lambda item: -len(item[0]))

    def bind(self, source: str) -> None:
        """A bound directory as the processes see it: its YAML configs templated,
        everything else the committed file itself."""
        copy = self.tmp / "binds" / source.strip("./")
        copy.mkdir(parents=True)
        self.binds[source] = copy
        for path in (ROOT / source).iterdir():
            if path.suffix in (".yaml", ".yml"):
                (copy / path.name).write_text(self.localize(path.read_text()))
            else:
                (copy / path.name).symlink_to(path)

    def own(self, args: list[str], name: str, port: int | None) -> list[str]:
        """``args`` of one instance of ``name``: its internal port becomes ``port``."""
        localized = [self.localize(arg) for arg in args]
        if port is None:
            return localized
        inner = str(internal_port(name))
        return [
            str(port) if arg == inner else arg.replace(f"127.0.0.1:{inner}", f"127.0.0.1:{port}")
            for arg in localized
        ]

    def environment(self, name: str) -> dict[str, str]:
        declared = SERVICES[name].get("environment") or {}
        return {key: self.localize(interpolate(str(value))) for key, value in declared.items()}

    # -- processes
    def command(self, name: str, port: int | None) -> list[str]:
        service = SERVICES[name]
        if name == "redis":
            return [*service["command"], "--port", str(port), "--bind", "127.0.0.1",
                    "--dir", str(self.tmp)]  # fmt: skip
        if name == "lb":
            assert port is not None
            return self.nginx(port)
        entrypoint = service.get("entrypoint") or ["c360"]
        program = [sys.executable, "-m", "gateway.cli"] if entrypoint == ["c360"] else [
            sys.executable, *self.own(entrypoint[1:], name, port)
        ]  # fmt: skip
        return [*program, *self.own(service.get("command") or [], name, port)]

    def nginx(self, port: int) -> list[str]:
        conf = self.localize((ROOT / "deploy" / "nginx.conf").read_text())
        replicas = "".join(f"server 127.0.0.1:{p}; " for p in self.ports["gateway"])
        conf = conf.replace(f"server gateway:{internal_port('gateway')};", replicas)
        conf = conf.replace(f"listen {internal_port('lb')};", f"listen 127.0.0.1:{port};")
        prefix = self.tmp / "nginx"
        temp = "".join(f"{kind}_temp_path {prefix}/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
        conf = conf.replace("http {\n", "http {\n" + temp, 1)
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(conf)
        globals_ = f"daemon off; pid {prefix}/nginx.pid;" + (
            " user root;" if os.geteuid() == 0 else ""
        )
        return [str(NGINX), "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                "-g", globals_]  # fmt: skip

    def healthcheck(self, name: str, port: int) -> list[str]:
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        args = self.own(test[1:], name, port)
        return [sys.executable if args[0] == "python" else args[0], *args[1:]]

    def start(self, name: str) -> None:
        replicas = int((SERVICES[name].get("deploy") or {}).get("replicas", 1))
        for replica in range(replicas):
            port = self.ports[name][replica] if name in self.ports else None
            env = self.env[name] = {**os.environ, **self.environment(name)}
            # The child keeps its own copy of the log's descriptor.
            with (self.tmp / f"{name}-{replica}.log").open("wb") as log:
                if "healthcheck" not in SERVICES[name]:  # a one-shot job
                    done = subprocess.run(self.command(name, port), env=env, stdout=log,
                                          stderr=subprocess.STDOUT, timeout=60, check=False)  # fmt: skip
                    assert done.returncode == 0, self.log(name, replica)
                    continue
                proc = subprocess.Popen(self.command(name, port), env=env, stdout=log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
            self.procs.append(proc)
            self.wait_healthy(name, replica, proc)

    def wait_healthy(self, name: str, replica: int, proc: subprocess.Popen[bytes]) -> None:
        check = self.healthcheck(name, self.ports[name][replica])
        deadline = time.monotonic() + DEADLINE
        while True:
            assert proc.poll() is None, f"{name} exited: {self.log(name, replica)}"
            probe = subprocess.run(check, capture_output=True, timeout=10, check=False)
            if probe.returncode == 0:
                return
            assert time.monotonic() < deadline, f"{name} never healthy: {self.log(name, replica)}"
            time.sleep(0.1)

    def log(self, name: str, replica: int = 0) -> str:
        return (self.tmp / f"{name}-{replica}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    top = Topology(tmp_path_factory.mktemp("compose"))
    for volume in COMPOSE.get("volumes") or {}:
        top.volumes[volume] = top.tmp / "volumes" / volume
        top.volumes[volume].mkdir(parents=True)
    for name, service in SERVICES.items():
        if "healthcheck" in service:  # a server; the rest are one-shot jobs
            replicas = int((service.get("deploy") or {}).get("replicas", 1))
            top.ports[name] = [free_port() for _ in range(replicas)]
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if (ROOT / source).is_dir() and source not in top.binds:
                top.bind(source)
    try:
        for name in start_order():
            top.start(name)
        yield top
    finally:
        top.stop()


# ------------------------------------------------------------------ a client of it
def client(via: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=via), timeout=30)


EDGE = "127.0.0.3"  # where the test's "internet" client connects to nginx from
INSIDE = "127.0.0.2"  # a client inside the compose network, bypassing nginx


def token(top: Topology, role: str = "admin") -> str:
    """As docker-compose.yml says: c360 token ... --issuer http://issuer:8701."""
    issuer = top.localize(f"http://issuer:{internal_port('issuer')}")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "token", "--role", role, "--mfa", "--issuer", issuer],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Asker:
    top: Topology
    bearer: str

    def __call__(self, url: str, email: str, *, via: str = EDGE, **headers: str) -> dict[str, Any]:
        body = self.raw(url, {"query": QUERY, "variables": {"e": email}}, via=via, **headers)
        customer: dict[str, Any] = body["data"]["customer"]
        return customer

    def raw(self, url: str, query: dict[str, Any], *, via: str = EDGE, **headers: str) -> dict:
        with client(via) as http:
            response = http.post(f"{url}/graphql", json=query,
                                 headers={"authorization": f"Bearer {self.bearer}", **headers})  # fmt: skip
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body["errors"]
        return body


@pytest.fixture(scope="module")
def ask(topology: Topology) -> Asker:
    return Asker(topology, token(topology))


@pytest.fixture(scope="module")
def people(topology: Topology) -> list[dict[str, Any]]:
    key = httpx.get(f"{topology.url('sandbox')}/_sandbox/customers", params={"limit": 300})
    return [
        p for p in key.json()["customers"]
        if p["in_all"] and not p["anomalies"] and len(p["systems"]["stripe"]) == 1
    ]  # fmt: skip


def upstream_calls(top: Topology, action: Callable[[], Any]) -> int:
    httpx.post(f"{top.url('sandbox')}/_sandbox/reset-stats")
    action()
    total: int = httpx.get(f"{top.url('sandbox')}/_sandbox/stats").json()["total"]
    return total


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 10
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def audit_events(top: Topology) -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / "deploy" / "c360.compose.yaml").read_text())
    path = Path(top.localize(config["audit"]["path"]))
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ the compose file itself
def test_the_compose_file_declares_a_topology_that_would_serve():
    """A YAML-level check (no compose plugin offline); `docker compose config` too where one is."""
    assert set(SERVICES) == {"redis", "sandbox", "issuer", "gateway", "lb", "sandbox-webhooks"}
    for name, service in SERVICES.items():
        assert "image" in service, name
        if name != "sandbox-webhooks":
            check = service["healthcheck"]
            assert check["test"][0] == "CMD" and check["interval"] and check["retries"], name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES and condition == {"condition": "service_healthy"}
    gateway = SERVICES["gateway"]
    assert gateway["deploy"]["replicas"] == 2
    assert "ports" not in gateway  # only nginx is published
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert published == {"lb": ["8080:8080"], "sandbox": ["127.0.0.1:8700:8700"]}
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    env = {k: interpolate(str(v)) for k, v in gateway["environment"].items()}
    assert len(env["C360_ID_KEY"]) >= 43 and len(env["C360_AUDIT_KEY"]) >= 43
    assert set(COMPOSE["volumes"]) == {"audit", "audit-checkpoint"}
    config = yaml.safe_load((ROOT / "deploy" / "c360.compose.yaml").read_text())
    mounted = {v.split(":")[1] for v in gateway["volumes"] if not v.startswith(".")}
    assert str(Path(config["audit"]["path"]).parent) in mounted
    assert str(Path(config["audit"]["checkpoint"]).parent) in mounted
    assert config["gateway"]["trusted_proxies"] == [LB_ADDRESS]
    assert config["cache"]["redis_url"] == f"redis://redis:{internal_port('redis')}/0"
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert LB_ADDRESS.rpartition(".")[0] == subnet.split("/")[0].rpartition(".")[0]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER c360" in dockerfile and "/var/log/c360 /var/lib/c360" in dockerfile
    cli = compose_cli()
    if cli is not None:
        done = subprocess.run([*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr


def compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin) or ``docker-compose``, whichever runs here."""
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        if subprocess.run([*cli, "version"], capture_output=True, check=False).returncode == 0:
            return cli
    return None


# ------------------------------------------------------------------ the running topology
def test_queries_through_nginx_reach_both_replicas_with_one_set_of_keys(topology, ask, people):
    person = people[0]
    before = [_served(topology, n) for n in range(2)]
    answers = [ask(topology.url("lb"), person["email"]) for _ in range(4)]
    assert len({a["id"] for a in answers}) == 1 and answers[0]["email"] == person["email"]
    after = [_served(topology, n) for n in range(2)]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    # An id one replica issued opens the customer on the other (shared C360_ID_KEY).
    by_id = {"query": "query($id: ID!) { customer(id: $id) { email } }",
             "variables": {"id": answers[0]["id"]}}  # fmt: skip
    for gateway in topology.gateways:
        body = ask.raw(gateway, by_id, via=INSIDE)
        assert body["data"]["customer"]["email"] == person["email"]
    # Redis holds the record cache the replicas share.
    with redis.Redis(port=topology.ports["redis"][0]) as store:
        assert store.dbsize() > 0


def _served(top: Topology, replica: int) -> float:
    text = httpx.get(f"{top.gateways[replica]}/metrics").text
    found = re.findall(r'^c360_graphql_requests_total\{outcome="ok"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def test_the_example_in_the_compose_file_answers(topology):
    """The header's token command and curl body, as a user would copy them."""
    text = (ROOT / "docker-compose.yml").read_text()
    command = re.search(r"exec issuer (c360 token .*)\)", text)
    body = re.search(r"-d '(\{.*\})'", text)
    assert command and body
    args = [topology.localize(arg) for arg in command.group(1).split()[1:]]
    done = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with client(EDGE) as http:
        response = http.post(
            f"{topology.url('lb')}/graphql", content=body.group(1),
            headers={"authorization": f"Bearer {done.stdout.strip()}",
                     "content-type": "application/json"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["data"]["searchCustomers"]["edges"], response.text


def test_metrics_and_probes_stay_on_the_internal_port(topology):
    with client(EDGE) as http:
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            assert http.get(f"{topology.url('lb')}{path}").status_code == 404, path
        meta = http.get(f"{topology.url('lb')}/.well-known/oauth-protected-resource")
    assert meta.status_code == 200
    assert meta.json()["resource"] == topology.url("lb")  # nginx passes the Host on
    for gateway in topology.gateways:
        assert "c360_graphql_requests_total" in httpx.get(f"{gateway}/metrics").text
        assert httpx.get(f"{gateway}/healthz").json()["status"] == "ok"
        assert httpx.get(f"{gateway}/readyz").json() == {"status": "ready", "audit": "ok"}


def test_a_sandbox_change_reaches_both_replicas_through_a_signed_webhook(topology, ask, people):
    person = people[1]
    for gateway in topology.gateways:
        ask(gateway, person["email"], via=INSIDE)
    for gateway in topology.gateways:  # cached now: no upstream call
        assert upstream_calls(topology, lambda g=gateway: ask(g, person["email"], via=INSIDE)) == 0
    phone = "+14155559871"
    spec = {"vendor": "stripe", "kind": "customer", "id": person["systems"]["stripe"][0],
            "changes": {"phone": phone}}  # fmt: skip
    answer = httpx.post(f"{topology.url('sandbox')}/_sandbox/mutate", json=spec, timeout=30).json()
    # Delivered through nginx (the URL sandbox-webhooks set), signed with the compose secret.
    assert answer["deliveries"] == [{"delivered": True, "status": 200}], answer
    assert '"POST /webhooks/stripe" 200' in topology.log("lb")
    for gateway in topology.gateways:
        wait_for(lambda g=gateway: phone in ask(g, person["email"], via=INSIDE)["phones"], gateway)
    assert phone in ask(topology.url("lb"), person["email"])["phones"]


def test_a_replayed_webhook_is_handled_once_by_every_replica(topology):
    secret = topology.env["gateway"]["STRIPE_WEBHOOK_SECRET"]
    event = {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": "invoice.paid",
             "data": {"object": {"id": "in_replayed", "customer": "cus_replayed"}}}  # fmt: skip
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": sign_stripe(secret, body, int(time.time())),
               "Content-Type": "application/json"}  # fmt: skip
    answers = []
    with client(EDGE) as http:
        for target in (topology.url("lb"), topology.url("lb"), *topology.gateways):
            response = http.post(f"{target}/webhooks/stripe", content=body, headers=headers)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    assert answers[0] == {"received": True, "evicted": 1}
    assert answers[1:] == [{"received": True, "duplicate": True, "evicted": 0}] * 3
    with redis.Redis(port=topology.ports["redis"][0]) as store:
        assert list(store.scan_iter("c360:webhook-seen:*"))


def test_the_audit_names_the_client_nginx_saw_and_never_a_forged_address(topology, ask, people):
    email = people[2]["email"]

    def source_ip(url: str, via: str, **headers: str) -> str:
        request_id = uuid.uuid4().hex
        ask(url, email, via=via, **{"X-Request-Id": request_id, **headers})
        [event] = [e for e in audit_events(topology) if e["request_id"] == request_id]
        address: str = event["source_ip"]
        return address

    forged = {"X-Forwarded-For": "203.0.113.66", "Forwarded": "for=203.0.113.67"}
    assert source_ip(topology.url("lb"), EDGE) == EDGE
    assert source_ip(topology.url("lb"), EDGE, **forged) == EDGE
    for gateway in topology.gateways:  # around nginx, from inside: the peer, whatever it says
        assert source_ip(gateway, INSIDE, **forged) == INSIDE


def test_nginx_logs_webhook_routes_without_their_secrets(topology, people):
    secret = topology.env["gateway"]["MAILCHIMP_WEBHOOK_SECRET"]
    spec = {"vendor": "mailchimp", "kind": "member", "email": people[3]["email"],
            "changes": {"merge_fields": {"FNAME": "Relayed"}}}  # fmt: skip
    answer = httpx.post(f"{topology.url('sandbox')}/_sandbox/mutate", json=spec, timeout=30).json()
    assert answer["deliveries"] and all(d["status"] == 200 for d in answer["deliveries"]), answer
    log = topology.log("lb")
    assert "/webhooks/mailchimp/<secret>" in log
    assert secret not in log


def test_both_replicas_kept_one_verifiable_audit_trail(topology):
    config = yaml.safe_load((ROOT / "deploy" / "c360.compose.yaml").read_text())
    trail, checkpoint = (topology.localize(config["audit"][k]) for k in ("path", "checkpoint"))
    assert len(audit_events(topology)) >= 10
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", trail,
         "--checkpoint", checkpoint, "--key", "env:C360_AUDIT_KEY"],
        capture_output=True, text=True, env=topology.env["gateway"], timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
