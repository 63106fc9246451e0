// A real custosd on a fresh SoftHSM2 token, for one test.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Custos } from "../src/index.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const CUSTOSD = process.env.CUSTOSD ?? path.join(ROOT, "target/debug/custosd");

/**
 * Starts custosd on a fresh token. `audit: true` writes the audit log to
 * `auditFile` (returned), one JSON line per operation.
 */
export async function startDaemon({ audit = false } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), "custos-node-"));
  mkdirSync(path.join(dir, "tokens"));
  const conf = path.join(dir, "softhsm2.conf");
  writeFileSync(conf, `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const pin = `pin-${randomBytes(8).toString("hex")}`;
  const env = { ...process.env, SOFTHSM2_CONF: conf, CUSTOS_TEST_PIN: pin };
  execFileSync("softhsm2-util", ["--init-token", "--free", "--label", "custos", "--so-pin", `so-${pin}`, "--pin", pin], { env, stdio: "ignore" });
  const socket = path.join(dir, "custos.sock");
  const config = path.join(dir, "custos.toml");
  writeFileSync(config, `[server]
socket = "${socket}"
state_dir = "${dir}/state"

[backends.hsm]
kind = "pkcs11"
profile = "softhsm2"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "custos"
pin = "env:CUSTOS_TEST_PIN"

[[access]]
name = "node tests"
unix_uid = ${process.getuid()}
keysets = ["*"]
operations = ["sign", "decrypt", "verify", "jwks", "admin"]
${audit ? `\n[audit]\nfile = "${dir}/audit.jsonl"\n` : ""}`);
  chmodSync(config, 0o600);
  const log = path.join(dir, "custosd.log");
  const proc = spawn(CUSTOSD, ["--config", config], { env, stdio: ["ignore", "ignore", openSync(log, "w")] });
  const deadline = Date.now() + 20_000;
  while (!existsSync(socket)) {
    if (proc.exitCode !== null) throw new Error(readFileSync(log, "utf8"));
    if (Date.now() > deadline) throw new Error("custosd did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  const client = Custos.connect({ socket });
  return {
    client,
    socket,
    auditFile: path.join(dir, "audit.jsonl"),
    async stop() {
      client.close();
      proc.kill("SIGTERM");
      await new Promise((r) => proc.once("exit", r));
    },
  };
}
