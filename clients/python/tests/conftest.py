"""A real custosd on a fresh SoftHSM2 token for every test."""

import os
import secrets
import socket as socketlib
import subprocess
import time
from pathlib import Path

import pytest

from custos import Custos

ROOT = Path(__file__).resolve().parents[3]
CUSTOSD = Path(os.environ.get("CUSTOSD", ROOT / "target" / "debug" / "custosd"))
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _pki(directory):
    """A CA (made with `cryptography`), the server's certificate for 127.0.0.1 and
    a client certificate with SAN spiffe://bank/as; returns the paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(name, key, issuer, issuer_key, san=None, ca=False):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    paths = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    for name, san in [
        ("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("as", [x509.UniformResourceIdentifier("spiffe://bank/as")]),
    ]:
        key = ec.generate_private_key(ec.SECP256R1())
        (directory / f"{name}.pem").write_bytes(
            cert(name, key, "test-ca", ca_key, san).public_bytes(serialization.Encoding.PEM)
        )
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (directory / f"{name}.key").chmod(0o600)
        paths[name] = (directory / f"{name}.pem", directory / f"{name}.key")
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["ca"] = directory / "ca.pem"
    return paths


@pytest.fixture
def tls_daemon(tmp_path):
    """A custosd whose caller is identified by a client certificate over TCP."""
    pki = _pki(tmp_path)
    with socketlib.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra = (
        f'tcp = "127.0.0.1:{port}"\n'
        f'tls_cert = "{pki["server"][0]}"\ntls_key = "{pki["server"][1]}"\n'
        f'client_ca = "{pki["ca"]}"\n'
    )
    access = 'tls_san = "spiffe://bank/as"'
    for client in _daemon(tmp_path, extra, access):
        client.close()
        deadline = time.time() + 20
        while True:
            try:
                socketlib.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.time() < deadline, "the TCP listener did not open"
                time.sleep(0.05)
        tls = Custos.connect(
            target=f"127.0.0.1:{port}",
            cert=pki["as"][0].read_bytes(),
            key=pki["as"][1].read_bytes(),
            ca=pki["ca"].read_bytes(),
        )
        yield tls
        tls.close()


@pytest.fixture
def daemon(tmp_path):
    yield from _daemon(tmp_path, "", f"unix_uid = {os.getuid()}")


@pytest.fixture
def limited_daemon(tmp_path):
    """A custosd that lets this caller make 2 calls a second (burst 2)."""
    yield from _daemon(tmp_path, "\n[limits]\nrate_per_second = 2\nburst = 2\n", f"unix_uid = {os.getuid()}")


def _daemon(tmp_path, server_extra, access):
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
{server_extra}
[backends.hsm]
kind = "pkcs11"
profile = "softhsm2"
module = "{SOFTHSM_MODULE}"
token_label = "custos"
pin = "env:CUSTOS_TEST_PIN"

[[access]]
name = "python tests"
{access}
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
