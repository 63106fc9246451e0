package custos.client;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * A real custosd on a fresh SoftHSM2 token, with its TCP listener on mutual TLS and a test
 * PKI made with the openssl CLI: a CA, the server's certificate for 127.0.0.1, a client
 * {@code spiffe://bank/as} that has an [[access]] rule, a client {@code spiffe://bank/other}
 * that has none, and a client from another CA.
 */
final class TestDaemon implements AutoCloseable {
  static final String SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

  final Path dir;
  final int port;
  private final Process process;

  TestDaemon() throws Exception {
    dir = Files.createTempDirectory("custos-java-");
    String pin = "pin-" + HexFormat.of().formatHex(new SecureRandom().generateSeed(8));
    Path tokens = Files.createDirectories(dir.resolve("tokens"));
    Path softhsm = dir.resolve("softhsm2.conf");
    Files.writeString(
        softhsm, "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n");
    Map<String, String> env = Map.of("SOFTHSM2_CONF", softhsm.toString(), "CUSTOS_TEST_PIN", pin);
    run(env, "softhsm2-util", "--init-token", "--free", "--label", "custos", "--so-pin", "so-" + pin, "--pin", pin);

    Path pki = Files.createDirectories(dir.resolve("pki"));
    ca(pki, "ca");
    ca(pki, "rogue-ca");
    leaf(pki, "ca", "server", "IP:127.0.0.1");
    leaf(pki, "ca", "as", "URI:spiffe://bank/as");
    leaf(pki, "ca", "other", "URI:spiffe://bank/other");
    leaf(pki, "rogue-ca", "rogue", "URI:spiffe://bank/as");

    port = freePort();
    Path config = dir.resolve("custos.toml");
    Files.writeString(
        config,
        "[server]\n"
            + "socket = \"" + dir.resolve("custos.sock") + "\"\n"
            + "state_dir = \"" + dir.resolve("state") + "\"\n"
            + "tcp = \"127.0.0.1:" + port + "\"\n"
            + "tls_cert = \"" + pki.resolve("server.pem") + "\"\n"
            + "tls_key = \"" + pki.resolve("server.key") + "\"\n"
            + "client_ca = \"" + pki.resolve("ca.pem") + "\"\n\n"
            + "[backends.hsm]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\n"
            + "module = \"" + SOFTHSM_MODULE + "\"\ntoken_label = \"custos\"\npin = \"env:CUSTOS_TEST_PIN\"\n\n"
            + "[[access]]\nname = \"java tests\"\ntls_san = \"spiffe://bank/as\"\nkeysets = [\"*\"]\n"
            + "operations = [\"sign\", \"decrypt\", \"verify\", \"jwks\", \"admin\"]\n");
    Files.setPosixFilePermissions(config, PosixFilePermissions.fromString("rw-------"));

    String custosd = System.getenv().getOrDefault("CUSTOSD", "../../target/debug/custosd");
    ProcessBuilder pb = new ProcessBuilder(custosd, "--config", config.toString());
    pb.environment().putAll(env);
    pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
    pb.redirectError(dir.resolve("custosd.log").toFile());
    process = pb.start();
    long deadline = System.currentTimeMillis() + 20_000;
    while (!listening(port)) {
      if (!process.isAlive() || System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("custosd did not start: " + log());
      }
      Thread.sleep(50);
    }
  }

  /** A client connected with the certificate {@code name} (as, other or rogue). */
  Custos client(String name) throws IOException {
    Path pki = dir.resolve("pki");
    return Custos.connectTls(
        "127.0.0.1",
        port,
        pki.resolve(name + ".pem").toFile(),
        pki.resolve(name + ".key").toFile(),
        pki.resolve("ca.pem").toFile());
  }

  String log() throws IOException {
    return Files.readString(dir.resolve("custosd.log"));
  }

  @Override
  public void close() throws Exception {
    process.destroy();
    process.waitFor();
    run(Map.of(), "rm", "-rf", dir.toString());
  }

  private static void ca(Path pki, String name) throws Exception {
    run(Map.of(), "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", pki.resolve(name + ".key").toString(), "-out", pki.resolve(name + ".pem").toString(),
        "-subj", "/CN=" + name, "-days", "2");
  }

  private static void leaf(Path pki, String ca, String name, String san) throws Exception {
    String sec1 = pki.resolve(name + ".sec1").toString();
    String csr = pki.resolve(name + ".csr").toString();
    Path ext = pki.resolve(name + ".ext");
    Files.writeString(ext, "subjectAltName=" + san + "\n");
    run(Map.of(), "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", sec1, "-out", csr, "-subj", "/CN=" + name);
    run(Map.of(), "openssl", "x509", "-req", "-in", csr, "-CA", pki.resolve(ca + ".pem").toString(),
        "-CAkey", pki.resolve(ca + ".key").toString(), "-CAcreateserial", "-days", "1",
        "-out", pki.resolve(name + ".pem").toString(), "-extfile", ext.toString());
    // netty wants PKCS#8; custosd wants its key unreadable by others.
    Path key = pki.resolve(name + ".key");
    run(Map.of(), "openssl", "pkcs8", "-topk8", "-nocrypt", "-in", sec1, "-out", key.toString());
    Files.setPosixFilePermissions(key, PosixFilePermissions.fromString("rw-------"));
  }

  private static void run(Map<String, String> env, String... cmd) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(List.of(cmd)).redirectErrorStream(true);
    pb.environment().putAll(env);
    Process p = pb.start();
    byte[] out = p.getInputStream().readAllBytes();
    if (p.waitFor() != 0) {
      throw new IllegalStateException(String.join(" ", cmd) + ": " + new String(out, StandardCharsets.UTF_8));
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static boolean listening(int port) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress("127.0.0.1", port), 200);
      return true;
    } catch (IOException e) {
      return false;
    }
  }
}
