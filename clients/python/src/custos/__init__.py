"""Python client for Custos, the HSM-backed FAPI signing daemon.

    from custos import Custos
    with Custos.connect(socket="/run/custos/custos.sock") as c:
        token = c.sign_id_token("as-id", {"sub": "alice", "aud": "client-1", "exp": exp})

One method per RPC. Claims and JSON parameters are dicts; other request
fields pass through as keyword arguments with their proto names. A failed
call raises :class:`CustosError`, which keeps the gRPC status code, the
daemon's message and its typed detail (what was missing or down, the claim
at fault, when to retry). An invalid presented token is not an error: verification
methods return the verdict, whose ``valid``, ``reason`` and ``detail`` say why.

Over the Unix socket the HTTP/2 authority is set to ``localhost``: grpcio
would otherwise send the socket path, which the server refuses.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from custos.v1 import keys_pb2, keys_pb2_grpc, signing_pb2, signing_pb2_grpc
from custos.v1 import verify_pb2, verify_pb2_grpc

__all__ = ["Custos", "CustosError"]


class CustosError(Exception):
    """A call Custos refused or could not do: the gRPC status, the daemon's
    message, and the typed detail the daemon sends with some statuses:

    - ``missing``: for NOT_FOUND, ``keyset``, ``version``, ``backend`` or ``request``;
    - ``outage``: for UNAVAILABLE, ``device``, ``keyring-store``, ``audit-log`` or
      ``contention``, and ``backend``, the backend a device outage names;
    - ``field``: for INVALID_ARGUMENT about one claim, ``claims.<name>``
      (the standard ``google.rpc.BadRequest`` detail);
    - ``retry_after``: for RESOURCE_EXHAUSTED, seconds until a call can pass
      (the standard ``google.rpc.RetryInfo`` detail).

    Each is ``None`` when the daemon did not send it.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        rpc: str,
        metadata: Optional[dict] = None,
        details: Optional[list] = None,
    ):
        super().__init__(f"{rpc}: {code.name}: {message}")
        self.code = code
        self.message = message
        self.rpc = rpc
        metadata = metadata or {}
        self.missing: Optional[str] = metadata.get("custos-missing")
        self.outage: Optional[str] = metadata.get("custos-unavailable")
        self.backend: Optional[str] = metadata.get("custos-backend")
        self.field: Optional[str] = None
        self.retry_after: Optional[float] = None
        for detail in details or []:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                if info.HasField("retry_delay"):
                    self.retry_after = info.retry_delay.ToTimedelta().total_seconds()
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                if bad.field_violations:
                    self.field = bad.field_violations[0].field

    @classmethod
    def from_rpc_error(cls, e: grpc.RpcError, rpc: str) -> "CustosError":
        """The error for a failed call, with the metadata and standard details read."""
        trailers = e.trailing_metadata() or ()
        metadata = {k: v for k, v in trailers if isinstance(v, str)}
        try:
            status = rpc_status.from_call(e)
        except Exception:  # a malformed details trailer: keep the code and message
            status = None
        details = list(status.details) if status is not None else []
        return cls(e.code(), e.details() or "", rpc, metadata, details)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Custos:
    """A connection to custosd (Unix socket, or TCP with mutual TLS)."""

    def __init__(self, channel: grpc.Channel, timeout: float = 30.0):
        self._channel = channel
        self._timeout = timeout
        self._admin = keys_pb2_grpc.KeyAdminStub(channel)
        self._signer = signing_pb2_grpc.SignerStub(channel)
        self._verifier = verify_pb2_grpc.VerifierStub(channel)

    @classmethod
    def connect(
        cls,
        socket: Optional[str] = None,
        target: Optional[str] = None,
        cert: Optional[bytes] = None,
        key: Optional[bytes] = None,
        ca: Optional[bytes] = None,
        timeout: float = 30.0,
    ) -> "Custos":
        """Connects over the Unix ``socket``, or to ``target`` (host:port) with
        mutual TLS (``cert``, ``key``: the client's PEM; ``ca``: the server's CA)."""
        if socket is not None:
            channel = grpc.insecure_channel(
                f"unix://{socket}", options=[("grpc.default_authority", "localhost")]
            )
        elif target is not None:
            if not (cert and key and ca):
                raise ValueError("TCP needs mutual TLS: give cert, key and ca (PEM bytes)")
            creds = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert
            )
            channel = grpc.secure_channel(target, creds)
        else:
            raise ValueError("give socket= or target=")
        return cls(channel, timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Custos":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, stub: Any, rpc: str, request: Any) -> Any:
        try:
            return getattr(stub, rpc)(request, timeout=self._timeout)
        except grpc.RpcError as e:
            raise CustosError.from_rpc_error(e, rpc) from None

    # Key administration.
    def create_keyset(self, name: str, alg: str, purposes: list, **fields: Any):
        req = keys_pb2.CreateKeysetRequest(name=name, alg=alg, purposes=purposes, **fields)
        return self._call(self._admin, "CreateKeyset", req)

    def list_keysets(self):
        return list(self._call(self._admin, "ListKeysets", keys_pb2.ListKeysetsRequest()).keysets)

    def get_keyset(self, name: str):
        return self._call(self._admin, "GetKeyset", keys_pb2.GetKeysetRequest(name=name))

    def jwks(self, keyset: str = "", issuer: str = "") -> dict:
        reply = self._call(
            self._admin, "GetJwks", keys_pb2.GetJwksRequest(keyset=keyset, issuer=issuer)
        )
        return json.loads(reply.jwks_json)

    def rotate(self, name: str, now: bool = False, **fields: Any):
        req = keys_pb2.RotateKeysetRequest(name=name, now=now, **fields)
        return self._call(self._admin, "RotateKeyset", req)

    def activate(self, name: str, kid: str):
        return self._call(self._admin, "ActivateVersion", keys_pb2.VersionRequest(name=name, kid=kid))

    def retire(self, name: str, kid: str):
        return self._call(self._admin, "RetireVersion", keys_pb2.VersionRequest(name=name, kid=kid))

    def disable(self, name: str, kid: str):
        return self._call(self._admin, "DisableVersion", keys_pb2.VersionRequest(name=name, kid=kid))

    def destroy(self, name: str, kid: str, **fields: Any):
        req = keys_pb2.DestroyVersionRequest(name=name, kid=kid, **fields)
        return self._call(self._admin, "DestroyVersion", req)

    def set_policy(self, name: str, **fields: Any):
        return self._call(self._admin, "SetPolicy", keys_pb2.SetPolicyRequest(name=name, **fields))

    # Signing.
    def sign_jwt(self, keyset: str, claims: Any, purpose: str = "generic", typ: str = ""):
        req = signing_pb2.SignJwtRequest(
            keyset=keyset, purpose=purpose, typ=typ, claims_json=_json(claims)
        )
        return self._call(self._signer, "SignJwt", req)

    def sign_jwt_batch(self, keyset: str, claims: list, purpose: str = "generic", typ: str = ""):
        req = signing_pb2.SignJwtBatchRequest(
            keyset=keyset, purpose=purpose, typ=typ, claims_json=[_json(c) for c in claims]
        )
        return list(self._call(self._signer, "SignJwtBatch", req).items)

    def sign_id_token(self, keyset: str, claims: Any, **fields: Any):
        req = signing_pb2.SignIdTokenRequest(keyset=keyset, claims_json=_json(claims), **fields)
        return self._call(self._signer, "SignIdToken", req)

    def sign_jarm_response(self, keyset: str, client_id: str, params: Any, **fields: Any):
        req = signing_pb2.SignJarmResponseRequest(
            keyset=keyset, client_id=client_id, params_json=_json(params), **fields
        )
        return self._call(self._signer, "SignJarmResponse", req)

    def sign_request_object(self, keyset: str, claims: Any, **fields: Any):
        req = signing_pb2.SignRequestObjectRequest(keyset=keyset, claims_json=_json(claims), **fields)
        return self._call(self._signer, "SignRequestObject", req)

    def sign_client_assertion(self, keyset: str, client_id: str, audience: str, **fields: Any):
        req = signing_pb2.SignClientAssertionRequest(
            keyset=keyset, client_id=client_id, audience=audience, **fields
        )
        return self._call(self._signer, "SignClientAssertion", req)

    def sign_access_token(self, keyset: str, claims: Any, **fields: Any):
        req = signing_pb2.SignAccessTokenRequest(keyset=keyset, claims_json=_json(claims), **fields)
        return self._call(self._signer, "SignAccessToken", req)

    def sign_introspection_response(self, keyset: str, audience: str, response: Any, **fields: Any):
        req = signing_pb2.SignIntrospectionResponseRequest(
            keyset=keyset, audience=audience, response_json=_json(response), **fields
        )
        return self._call(self._signer, "SignIntrospectionResponse", req)

    def sign_http_message(self, keyset: str, **fields: Any):
        req = signing_pb2.SignHttpMessageRequest(keyset=keyset, **fields)
        return self._call(self._signer, "SignHttpMessage", req)

    def decrypt_jwe(self, keyset: str, jwe: str):
        req = signing_pb2.DecryptJweRequest(keyset=keyset, jwe=jwe)
        return self._call(self._signer, "DecryptJwe", req)

    # Verification: an invalid token is a verdict, not an exception.
    def verify_access_token(self, token: str, **fields: Any):
        req = verify_pb2.VerifyAccessTokenRequest(token=token, **fields)
        return self._call(self._verifier, "VerifyAccessToken", req)

    def verify_jws(self, token: str, keyset: str = "", jwks: Any = None, typ: str = ""):
        if jwks is not None:
            req = verify_pb2.VerifyJwsRequest(token=token, jwks_json=_json(jwks), typ=typ)
        else:
            req = verify_pb2.VerifyJwsRequest(token=token, keyset=keyset, typ=typ)
        return self._call(self._verifier, "VerifyJws", req)

    def verify_request_object(self, token: str, jwks: Any, client_id: str, issuer: str, kind: str = ""):
        req = verify_pb2.VerifyRequestObjectRequest(
            token=token, jwks_json=_json(jwks), client_id=client_id, issuer=issuer, kind=kind
        )
        return self._call(self._verifier, "VerifyRequestObject", req)

    def verify_client_assertion(self, token: str, **fields: Any):
        if "jwks" in fields:
            fields["jwks_json"] = _json(fields.pop("jwks"))
        req = verify_pb2.VerifyClientAssertionRequest(token=token, **fields)
        return self._call(self._verifier, "VerifyClientAssertion", req)

    def verify_http_message(self, **fields: Any):
        return self._call(self._verifier, "VerifyHttpMessage", verify_pb2.VerifyHttpMessageRequest(**fields))
