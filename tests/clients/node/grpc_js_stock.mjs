// A stock @grpc/grpc-js program: list custosd's services by reflection (v1)
// and sign an ID token over the Unix socket, with Custos's .proto files
// loaded at run time by @grpc/proto-loader. grpc-js sends "localhost" as the
// authority on a Unix socket, so no override is needed.
//
// Usage: node grpc_js_stock.mjs SOCKET KEYSET PROTO_DIR; prints the compact JWS.
import { createRequire } from "node:module";
import path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as loader from "@grpc/proto-loader";

const [socket, keyset, protoDir] = process.argv.slice(2);
const target = `unix://${socket}`;
const options = { keepCase: true, longs: String, defaults: true };

const require = createRequire(import.meta.url);
const reflectionProto = path.join(
  path.dirname(require.resolve("@grpc/reflection/package.json")),
  "build/proto/grpc/reflection/v1/reflection.proto",
);
const reflection = grpc.loadPackageDefinition(loader.loadSync(reflectionProto, options));
const reflectionClient = new reflection.grpc.reflection.v1.ServerReflection(
  target,
  grpc.credentials.createInsecure(),
);

function listServices() {
  return new Promise((resolve, reject) => {
    const call = reflectionClient.ServerReflectionInfo();
    call.on("data", (reply) => {
      call.end();
      if (!reply.list_services_response) {
        reject(new Error(`unexpected reflection reply: ${JSON.stringify(reply)}`));
        return;
      }
      resolve(reply.list_services_response.service.map((s) => s.name));
    });
    call.on("error", reject);
    call.write({ list_services: "" });
  });
}

const services = await listServices();
for (const want of ["custos.v1.Signer", "custos.v1.Verifier", "custos.v1.KeyAdmin"]) {
  if (!services.includes(want)) {
    console.error(`reflection does not list ${want}: ${services}`);
    process.exit(1);
  }
}

const custos = grpc.loadPackageDefinition(
  loader.loadSync("custos/v1/signing.proto", { ...options, includeDirs: [protoDir] }),
);
const signer = new custos.custos.v1.Signer(target, grpc.credentials.createInsecure());
const claims = { sub: "alice", aud: "client-1", exp: Math.floor(Date.now() / 1000) + 300 };
signer.SignIdToken(
  { keyset, claims_json: JSON.stringify(claims) },
  { deadline: Date.now() + 10_000 },
  (err, reply) => {
    if (err) {
      console.error(`SignIdToken: ${err.code} ${err.details}`);
      process.exit(1);
    }
    console.log(reply.token);
    process.exit(0);
  },
);
