"""A stock grpcio program, written as the README's "Clients" section says:
list custosd's services by reflection (v1alpha, what grpcio_reflection's
client speaks) and sign an ID token, over the Unix socket, with no code
generated from Custos's protos (the descriptors come from reflection).

Usage: grpcio_stock.py SOCKET KEYSET; prints the compact JWS.
"""

import json
import sys
import time

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    socket, keyset = sys.argv[1], sys.argv[2]
    # grpcio sends the socket path as the HTTP/2 :authority, which the
    # server's HTTP/2 stack refuses as malformed: name the authority.
    channel = grpc.insecure_channel(
        f"unix://{socket}", options=[("grpc.default_authority", "localhost")]
    )
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    for want in ("custos.v1.Signer", "custos.v1.Verifier", "custos.v1.KeyAdmin"):
        if want not in services:
            print(f"reflection does not list {want}: {sorted(services)}", file=sys.stderr)
            return 1
    pool = descriptor_pool.DescriptorPool(db)
    method = pool.FindServiceByName("custos.v1.Signer").FindMethodByName("SignIdToken")
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        "/custos.v1.Signer/SignIdToken",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    claims = {"sub": "alice", "aud": "client-1", "exp": int(time.time()) + 300}
    reply = call(request_cls(keyset=keyset, claims_json=json.dumps(claims)), timeout=10)
    print(reply.token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
