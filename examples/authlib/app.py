"""A minimal OpenID Connect authorization server on Authlib whose ID tokens
come from Custos's SignIdToken: the process holds no private key.

What stays here: the client registry, login and consent (scripted: the
`login` query parameter names the user), codes and access tokens. What Custos
does: the key, the signature and the ID-token rules (`iss` from the keyset,
`iat`, `at_hash`, the lifetime ceiling).

    CUSTOS_SOCKET=/run/custos/custos.sock python examples/authlib/app.py
"""

import os
import secrets
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request

from custos import Custos

#: The keyset that signs ID tokens, created in Custos when missing.
KEYSET = "as-id"


@dataclass
class Client:
    """One registered client (Authlib's ClientMixin)."""

    client_id: str
    client_secret: str
    redirect_uris: list
    scope: str = "openid"
    id_token_signed_response_alg: str = "ES256"

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_basic"

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class User:
    id: str

    def get_user_id(self):
        return self.id


@dataclass
class Code:
    """An authorization code (Authlib's AuthorizationCodeMixin)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    nonce: str = ""
    code_challenge: str = ""
    code_challenge_method: str = ""
    auth_time: int = field(default_factory=lambda: int(time.time()))
    expires_at: int = field(default_factory=lambda: int(time.time()) + 60)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce or None

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


def create_app(custos: Custos, issuer: str, clients: list, users: set) -> Flask:
    """The AS: `clients` are Client records, `users` the usernames that may sign in."""
    if KEYSET not in {k.name for k in custos.list_keysets()}:
        custos.create_keyset(KEYSET, "ES256", ["id_token"], issuer=issuer)
    registry = {c.client_id: c for c in clients}
    codes: dict = {}
    tokens: dict = {}

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

        def save_authorization_code(self, code, req):
            codes[code] = Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope,
                user_id=req.user.id,
                nonce=req.payload.data.get("nonce", ""),
                code_challenge=req.payload.data.get("code_challenge", ""),
                code_challenge_method=req.payload.data.get("code_challenge_method", ""),
            )

        def query_authorization_code(self, code, client):
            found = codes.get(code)
            if found and found.client_id == client.client_id and found.expires_at > time.time():
                return found
            return None

        def delete_authorization_code(self, authorization_code):
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return User(authorization_code.user_id)

    class CustosOpenIDCode(OpenIDCode):
        """ID tokens signed by Custos instead of a key held here."""

        def exists_nonce(self, nonce, req):
            return any(c.nonce == nonce for c in codes.values())

        def generate_user_info(self, user, scope):
            return {"sub": user.id}

        def encode_id_token(self, token, req):
            claims = {
                "sub": req.user.id,
                "aud": req.client.client_id,
                "exp": int(time.time()) + 300,
                "auth_time": req.authorization_code.auth_time,
            }
            if nonce := req.authorization_code.get_nonce():
                claims["nonce"] = nonce
            # Custos sets iss and iat and computes at_hash from the token.
            return custos.sign_id_token(KEYSET, claims, access_token=token["access_token"]).token

    def save_token(token, req):
        tokens[token["access_token"]] = (req.client.client_id, req.user.id)

    app = Flask(__name__)
    server = AuthorizationServer(app, query_client=registry.get, save_token=save_token)
    server.register_grant(CodeGrant, [CustosOpenIDCode(require_nonce=True), CodeChallenge(required=True)])

    @app.get("/.well-known/openid-configuration")
    def discovery():
        return jsonify(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/authorize",
            token_endpoint=f"{issuer}/token",
            jwks_uri=f"{issuer}/jwks",
            response_types_supported=["code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["ES256"],
            token_endpoint_auth_methods_supported=["client_secret_basic"],
            code_challenge_methods_supported=["S256"],
        )

    @app.get("/jwks")
    def jwks():
        return jsonify(custos.jwks(keyset=KEYSET))

    @app.get("/authorize")
    def authorize():
        login = request.args.get("login", "")
        if login not in users:
            return "sign in: add ?login=USERNAME", 401
        return server.create_authorization_response(grant_user=User(login))

    @app.post("/token")
    def token():
        return server.create_token_response()

    return app


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    issuer = os.environ.get("ISSUER", f"http://127.0.0.1:{port}")
    custos = Custos.connect(socket=os.environ.get("CUSTOS_SOCKET", "/run/custos/custos.sock"))
    demo = Client("client-1", os.environ.get("CLIENT_SECRET", "change-me"), ["http://127.0.0.1/cb"])
    create_app(custos, issuer, [demo], {"alice"}).run(host="127.0.0.1", port=port)
