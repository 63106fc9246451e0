"""The Authlib AS against a real custosd, exercised by Authlib's own OAuth 2
client: code flow with PKCE and nonce; the ID token verified with joserfc
against the JWKS the AS serves (Custos's), at_hash checked by hand."""

import base64
import hashlib
import sys
import threading
from pathlib import Path

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import KEYSET, Client, create_app  # noqa: E402

REDIRECT = "http://127.0.0.1/cb"


@pytest.fixture
def authorization_server(daemon):
    server = make_server("127.0.0.1", 0, None)
    issuer = f"http://127.0.0.1:{server.server_port}"
    server.app = create_app(daemon, issuer, [Client("client-1", "s3cret", [REDIRECT])], {"alice"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield issuer
    server.shutdown()


def test_authlib_issues_id_tokens_signed_by_custos(daemon, authorization_server):
    issuer = authorization_server
    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    rp = OAuth2Session("client-1", "s3cret", scope="openid", redirect_uri=REDIRECT,
                       code_challenge_method="S256")
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                             nonce=nonce)
    # Scripted login: the AS takes the user from ?login=.
    refused = requests.get(url, allow_redirects=False, timeout=10)
    assert refused.status_code == 401
    answer = requests.get(url + "&login=alice", allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    token = rp.fetch_token(meta["token_endpoint"], authorization_response=answer.headers["location"],
                           code_verifier=verifier)

    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    assert jwks == daemon.jwks(keyset=KEYSET), "the AS serves Custos's JWKS"
    assert all("d" not in k for k in jwks["keys"])
    decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["ES256"])
    claims = decoded.claims
    assert decoded.header["kid"] == daemon.get_keyset(KEYSET).versions[0].kid
    assert (claims["iss"], claims["sub"], claims["aud"], claims["nonce"]) == (issuer, "alice", "client-1", nonce)
    digest = hashlib.sha256(token["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer}, exp={"essential": True}).validate(claims)

    # A forged token (claims changed, signature kept) fails the same check.
    head, _, sig = token["id_token"].split(".")
    forged_claims = base64.urlsafe_b64encode(b'{"sub":"mallory"}').rstrip(b"=").decode()
    with pytest.raises(Exception):
        jwt.decode(f"{head}.{forged_claims}.{sig}", KeySet.import_key_set(jwks), algorithms=["ES256"])
