"""`c360 … --help`: every option says what it is and its default, and the
README's synopsis names every option; bad numbers are argparse's one line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gateway.cli import _parser, main
from gateway.issuer import token_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = {name: p for name, p in sub.choices.items() if name not in ("audit", "token")}
    return {**commands, "token": token_parser()}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def _synopsis(command: str) -> str:
    block = re.search(r"## The `c360` command\n\n```sh\n(.*?)```", README, re.S).group(1)
    found = re.search(rf"^c360 {command} .*?(?=^c360 |\Z)", block, re.S | re.M)
    assert found, command
    return found.group(0)


@pytest.mark.parametrize("command", ["demo", "serve", "sandbox", "token", "roles", "schema"])
def test_every_option_has_help_with_its_default(command):
    for action in _options(_commands()[command]):
        text = action.help or ""
        assert len(text) > 15, (command, action.option_strings)
        needs_default = not action.required and not isinstance(action, argparse._StoreTrueAction)
        if needs_default:
            assert "(default" in text, (command, action.option_strings, text)
        if action.required:
            assert "(required" in text, (command, action.option_strings, text)


@pytest.mark.parametrize("command", ["demo", "serve", "sandbox", "token", "roles"])
def test_the_readme_synopsis_names_every_option(command):
    synopsis = _synopsis(command)
    for action in _options(_commands()[command]):
        assert any(f"[{o}" in synopsis or f" {o} " in synopsis for o in action.option_strings), (
            command, action.option_strings,
        )  # fmt: skip


def test_the_readme_synopsis_of_audit_verify_names_every_option(capsys):
    assert main(["audit", "verify", "--help"]) == 0
    options = set(re.findall(r"(--[a-z-]+)", capsys.readouterr().out)) - {"--help"}
    assert options and all(o in _synopsis("audit") for o in options), options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--port", "0"], "argument --port: 0 is not between 1 and 65535"),
        (["demo", "--port", "http"], "argument --port: not a number: 'http'"),
        (["sandbox", "--customers", "0"], "argument --customers: 0 is not between 1 and 1e+06"),
        (["demo", "--latency-ms", "-1"], "argument --latency-ms: -1 is not between 0 and 60000"),
        (["serve", "--config", "x", "--workers", "0"], "argument --workers: 0 is not between 1"),
        (["serve", "--config", "x", "--log-level", "loud"], "argument --log-level: invalid choice"),
    ],
)
def test_bad_numbers_are_one_usage_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_preferred_port_past_65535_falls_back_to_a_free_one():
    from gateway._demo_cli import _Port, bind_ports

    [sock] = bind_ports("127.0.0.1", [_Port("--issuer-port", None, 65536)])
    with sock:
        assert 0 < sock.getsockname()[1] < 65536
