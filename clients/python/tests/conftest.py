"""A real custosd on a fresh SoftHSM2 token for every test."""

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from custos import Custos

ROOT = Path(__file__).resolve().parents[3]
CUSTOSD = Path(os.environ.get("CUSTOSD", ROOT / "target" / "debug" / "custosd"))
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture
def daemon(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = "pin-" + secrets.token_hex(8)
    env = dict(os.environ, SOFTHSM2_CONF=str(conf), CUSTOS_TEST_PIN=pin)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "custos", "--so-pin", "so-" + pin, "--pin", pin],
        env=env, check=True, capture_output=True,
    )
    socket = tmp_path / "custos.sock"
    config = tmp_path / "custos.toml"
    config.write_text(
        f"""[server]
socket = "{socket}"
state_dir = "{tmp_path / 'state'}"

[backends.hsm]
kind = "pkcs11"
profile = "softhsm2"
module = "{SOFTHSM_MODULE}"
token_label = "custos"
pin = "env:CUSTOS_TEST_PIN"

[[access]]
name = "python tests"
unix_uid = {os.getuid()}
keysets = ["*"]
operations = ["sign", "decrypt", "verify", "jwks", "admin"]
"""
    )
    config.chmod(0o600)
    log = open(tmp_path / "custosd.log", "w")
    proc = subprocess.Popen([str(CUSTOSD), "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 20
    while not socket.exists():
        assert proc.poll() is None, (tmp_path / "custosd.log").read_text()
        assert time.time() < deadline, "custosd did not start"
        time.sleep(0.05)
    client = Custos.connect(socket=str(socket))
    yield client
    client.close()
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
