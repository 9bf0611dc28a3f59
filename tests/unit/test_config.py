from __future__ import annotations

import re
import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_settings, require_id_key, settings_from_mapping


def _conn(**extra):
    return {"connectors": {"salesforce": {"base_url": "https://x.example", **extra}}}


def test_credentials_come_from_env_or_file(tmp_path, monkeypatch):
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("SF_TOKEN", "from-env")
    s = settings_from_mapping(
        _conn(credentials={"token": "env:SF_TOKEN", "other": f"file:{secret}"})
    )
    creds = s.connectors[0].settings.credentials
    assert creds == {"token": "from-env", "other": "from-file"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_conn(credentials={"token": "literal-secret"}), "not a literal"),
        (_conn(credentials={"token": "env:C360_SURELY_UNSET"}), "C360_SURELY_UNSET is not set"),
        ({"connectors": {"salesforce": {"base_url": "ftp://x"}}}, "base_url"),
        ({"connectors": {}}, "no connectors"),
        ({"gateway": {"transport": "curl"}, **_conn()}, "transport"),
        (_conn(timeout="soon"), "timeout"),
    ],
)
def test_bad_config_is_a_clear_error(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        settings_from_mapping(data, env={})


def test_literal_secret_never_echoed():
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(_conn(credentials={"token": "sk_live_supersecret"}), env={})
    assert "supersecret" not in str(info.value)


def test_id_key(tmp_path):
    s = settings_from_mapping(_conn(), env={})
    assert s.id_key_is_ephemeral
    s = settings_from_mapping(_conn(), env={"C360_ID_KEY": "a" * 43})
    assert not s.id_key_is_ephemeral and len(s.id_key) == 32
    with pytest.raises(ConfigError, match="32, 48 or 64"):
        settings_from_mapping(_conn(), env={"C360_ID_KEY": "abcd"})


def test_serving_requires_an_id_key_and_says_how_to_make_one():
    with pytest.raises(ConfigError) as info:
        require_id_key(settings_from_mapping(_conn(), env={}))
    message = str(info.value)
    assert "\n" not in message and message.startswith("C360_ID_KEY is not set: ")
    assert "customer ids, search cursors and cache keys" in message
    # The command in the message makes a key the setting takes.
    [command] = re.findall(r"`([^`]+)`", message)
    assert command.startswith("python3 -c ")
    code = command.split("-c ", 1)[1].strip("'")
    key = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    settings = settings_from_mapping(_conn(), env={"C360_ID_KEY": key.stdout.strip()})
    require_id_key(settings)
    assert len(settings.id_key) == 32


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("connectors: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
