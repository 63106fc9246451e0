"""The client against a real custosd; signatures checked with `cryptography`."""

import base64
import json
import time

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from custos import CustosError

ISSUER = "https://as.bank"


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_es256(jws: str, jwks: dict) -> dict:
    """An independent ES256 check against a JWK Set; returns the claims."""
    head, payload, sig = jws.split(".")
    header = json.loads(b64d(head))
    assert header["alg"] == "ES256"
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64d(jwk["x"]), "big"), int.from_bytes(b64d(jwk["y"]), "big"), ec.SECP256R1()
    ).public_key()
    raw = b64d(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(b64d(payload))


def test_id_token_is_signed_in_the_hsm_and_verifies_independently(daemon):
    daemon.create_keyset("as-id", "ES256", ["id_token"], issuer=ISSUER)
    exp = int(time.time()) + 300
    signed = daemon.sign_id_token("as-id", {"sub": "alice", "aud": "client-1", "exp": exp}, code="abc")
    claims = verify_es256(signed.token, daemon.jwks(keyset="as-id"))
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and "c_hash" in claims
    assert signed.kid == json.loads(b64d(signed.token.split(".")[0]))["kid"]


def test_generic_jwt_and_batch_verify_and_a_tampered_token_is_a_verdict(daemon):
    daemon.create_keyset("gen", "ES256", ["generic"])
    signed = daemon.sign_jwt("gen", {"hello": "world"})
    jwks = daemon.jwks(keyset="gen")
    assert verify_es256(signed.jws, jwks)["hello"] == "world"
    assert daemon.verify_jws(signed.jws, keyset="gen").valid
    assert daemon.verify_jws(signed.jws, jwks=jwks).valid
    head, payload, sig = signed.jws.split(".")
    forged = ".".join([head, base64.urlsafe_b64encode(b'{"hello":"mallory"}').rstrip(b"=").decode(), sig])
    verdict = daemon.verify_jws(forged, keyset="gen")
    assert not verdict.valid and verdict.reason
    with pytest.raises(InvalidSignature):
        verify_es256(forged, jwks)
    items = daemon.sign_jwt_batch("gen", [{"i": 1}, {"i": 2}])
    assert [verify_es256(i.signed.jws, jwks)["i"] for i in items] == [1, 2]


def test_errors_keep_the_status_and_the_daemons_message(daemon):
    with pytest.raises(CustosError) as e:
        daemon.sign_jwt("nope", {})
    assert e.value.code == grpc.StatusCode.NOT_FOUND and "nope" in e.value.message
    daemon.create_keyset("as-id", "ES256", ["id_token"], issuer=ISSUER)
    with pytest.raises(CustosError) as e:
        daemon.sign_jwt("as-id", {}, purpose="id_token")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(CustosError) as e:
        daemon.sign_id_token("as-id", "[1, 2]")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_errors_carry_the_daemons_typed_detail(daemon):
    # NOT_FOUND says what was missing.
    with pytest.raises(CustosError) as e:
        daemon.sign_jwt("nope", {})
    assert e.value.missing == "keyset" and e.value.field is None
    # INVALID_ARGUMENT names the claim at fault (google.rpc.BadRequest, read
    # with grpcio-status: an independent reading of the daemon's encoding).
    daemon.create_keyset("as-id", "ES256", ["id_token"], issuer=ISSUER)
    now = int(time.time())
    with pytest.raises(CustosError) as e:
        daemon.sign_id_token("as-id", {"sub": "alice", "aud": "client-1", "iat": now + 3000, "exp": now + 3100})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.field == "claims.iat", e.value
    with pytest.raises(CustosError) as e:
        daemon.sign_id_token("as-id", {"sub": "alice", "aud": "client-1", "exp": now + 7200})
    assert e.value.field == "claims.exp", e.value
    assert e.value.retry_after is None and e.value.outage is None


def test_a_rate_limited_caller_is_told_when_to_retry(limited_daemon):
    refused = None
    for _ in range(10):
        try:
            limited_daemon.list_keysets()
        except CustosError as e:
            refused = e
            break
    assert refused is not None, "two a second: ten quick calls must hit the limit"
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # google.rpc.RetryInfo: at most one token interval (0.5 s) away.
    assert refused.retry_after is not None and 0 < refused.retry_after <= 0.5, refused.retry_after
    time.sleep(refused.retry_after)
    limited_daemon.list_keysets()


def test_key_administration_round_trip(daemon):
    ks = daemon.create_keyset("gen", "ES256", ["generic"])
    first = ks.versions[0].kid
    rotated = daemon.rotate("gen", now=True)
    assert rotated.versions[-1].kid != first
    assert [k.name for k in daemon.list_keysets()] == ["gen"]
    policy = daemon.set_policy("gen", rotation_period="90d")
    assert policy.policy.rotation_period == 90 * 86400
    assert daemon.get_keyset("gen").name == "gen"


def test_fapi_tokens_sign_and_verify(daemon):
    daemon.create_keyset("as-jarm", "ES256", ["jarm"], issuer=ISSUER)
    daemon.create_keyset("as-at", "ES256", ["access_token"], issuer=ISSUER)
    daemon.create_keyset("as-intro", "ES256", ["introspection"], issuer=ISSUER)
    daemon.create_keyset("client-1-ca", "ES256", ["client_assertion"])
    daemon.create_keyset("client-1-ro", "ES256", ["request_object"])
    exp = int(time.time()) + 300

    jarm = daemon.sign_jarm_response("as-jarm", "client-1", {"code": "c-1", "state": "s-1"})
    claims = verify_es256(jarm.token, daemon.jwks(keyset="as-jarm"))
    assert (claims["iss"], claims["aud"], claims["code"]) == (ISSUER, "client-1", "c-1")

    at = daemon.sign_access_token(
        "as-at", {"sub": "alice", "aud": "https://rs.bank", "client_id": "client-1", "exp": exp}
    )
    assert verify_es256(at.token, daemon.jwks(keyset="as-at"))["client_id"] == "client-1"
    verdict = daemon.verify_access_token(at.token, issuer=ISSUER, allow_bearer=True)
    assert verdict.valid and verdict.keyset == "as-at", verdict

    intro = daemon.sign_introspection_response("as-intro", "client-1", {"active": True, "sub": "alice"})
    claims = verify_es256(intro.token, daemon.jwks(keyset="as-intro"))
    assert claims["token_introspection"]["active"] is True

    ca = daemon.sign_client_assertion("client-1-ca", "client-1", "https://as.bank/token")
    ca_jwks = daemon.jwks(keyset="client-1-ca")
    assert verify_es256(ca.token, ca_jwks)["sub"] == "client-1"
    check = dict(jwks=ca_jwks, client_id="client-1", audiences=["https://as.bank/token"])
    assert daemon.verify_client_assertion(ca.token, **check).valid
    replayed = daemon.verify_client_assertion(ca.token, **check)
    assert not replayed.valid and replayed.reason, "a client assertion is accepted once"

    ro = daemon.sign_request_object(
        "client-1-ro",
        {"iss": "client-1", "client_id": "client-1", "aud": ISSUER, "response_type": "code",
         "redirect_uri": "https://client/cb", "scope": "openid"},
    )
    ro_jwks = daemon.jwks(keyset="client-1-ro")
    assert verify_es256(ro.token, ro_jwks)["scope"] == "openid"
    assert daemon.verify_request_object(ro.token, ro_jwks, "client-1", ISSUER).valid


def test_http_message_signature_round_trip_and_jwe_decryption(daemon):
    from custos.v1 import http_pb2

    daemon.create_keyset("rs-http", "ES256", ["http_message"])
    message = http_pb2.HttpMessage(
        method="POST",
        target_uri="https://rs.bank/payments",
        fields=[http_pb2.HttpField(name="authorization", value="DPoP abc"),
                http_pb2.HttpField(name="content-type", value="application/json")],
        body=b'{"amount": 1}',
    )
    signed = daemon.sign_http_message("rs-http", message=message)
    assert signed.signature.startswith("sig1=") and signed.content_digest.startswith("sha-256=")
    sent = http_pb2.HttpMessage()
    sent.CopyFrom(message)
    sent.fields.extend([
        http_pb2.HttpField(name="content-digest", value=signed.content_digest),
        http_pb2.HttpField(name="signature-input", value=signed.signature_input),
        http_pb2.HttpField(name="signature", value=signed.signature),
    ])
    assert daemon.verify_http_message(message=sent, keyset="rs-http").valid
    sent.body = b'{"amount": 1000}'
    verdict = daemon.verify_http_message(message=sent, keyset="rs-http")
    assert not verdict.valid and verdict.reason

    # A request object encrypted to the AS (RSA-OAEP-256, A256GCM), decrypted in the HSM.
    import os
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    daemon.create_keyset("as-enc", "RSA-OAEP-256", ["request_object_decryption"], issuer=ISSUER)
    jwk = daemon.jwks(keyset="as-enc")["keys"][0]
    public = rsa.RSAPublicNumbers(
        int.from_bytes(b64d(jwk["e"]), "big"), int.from_bytes(b64d(jwk["n"]), "big")
    ).public_key()
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": jwk["kid"]}).encode())
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = public.encrypt(
        cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    )
    sealed = AESGCM(cek).encrypt(iv, b"inner request object", header.encode())
    jwe = ".".join([header, b64(wrapped), b64(iv), b64(sealed[:-16]), b64(sealed[-16:])])
    out = daemon.decrypt_jwe("as-enc", jwe)
    assert out.plaintext == b"inner request object" and out.kid == jwk["kid"]


def test_tcp_with_mutual_tls_identifies_the_caller_by_certificate(tls_daemon):
    tls_daemon.create_keyset("as-id", "ES256", ["id_token"], issuer=ISSUER)
    exp = int(time.time()) + 300
    signed = tls_daemon.sign_id_token("as-id", {"sub": "alice", "aud": "client-1", "exp": exp})
    assert verify_es256(signed.token, tls_daemon.jwks(keyset="as-id"))["sub"] == "alice"
