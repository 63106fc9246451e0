package custos.client;

import custos.v1.KeyAdminGrpc;
import custos.v1.Keys;
import custos.v1.Signing;
import custos.v1.SignerGrpc;
import custos.v1.VerifierGrpc;
import custos.v1.Verify;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslProvider;
import java.io.File;
import java.io.IOException;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A connection to custosd: one method per Signer, Verifier and KeyAdmin RPC.
 *
 * <p>Claims, parameters and JWK Sets are JSON text, so any JSON library (Jackson, Gson)
 * works with it. Each method that takes the common fields has an overload taking the
 * generated request message, for every other field. Errors are {@link CustosException}s
 * keeping the gRPC status and the daemon's message.
 *
 * <p>Transport: TCP with mutual TLS ({@link #connectTls}). grpc-java reaches a Unix socket
 * only through netty's native epoll transport, which Debian's netty does not ship; with a
 * netty that has it, build the channel yourself with {@code .overrideAuthority("localhost")}
 * and pass it to {@link #Custos(ManagedChannel, long)}.
 */
public final class Custos implements AutoCloseable {
  private final ManagedChannel channel;
  private final long timeoutMillis;

  /** Wraps a channel you built; {@code timeoutMillis} is the deadline of each call. */
  public Custos(ManagedChannel channel, long timeoutMillis) {
    this.channel = channel;
    this.timeoutMillis = timeoutMillis;
  }

  /**
   * Connects to custosd's TCP listener with mutual TLS: {@code cert} and {@code key} are the
   * client's PEM certificate chain and PKCS#8 key (its SAN is what {@code [[access]] tls_san}
   * matches), {@code ca} the PEM CA that issued the server's certificate, whose name must
   * match {@code host}.
   *
   * <p>gRPC needs ALPN, which netty gets from OpenSSL through netty-tcnative: the native
   * library {@code libnetty_tcnative.so} must be on {@code java.library.path} (Debian's
   * {@code libnetty-tcnative-jni} ships it as {@code libnetty-tcnative.so}; copy it under
   * that name, a symbolic link is refused).
   */
  public static Custos connectTls(String host, int port, File cert, File key, File ca)
      throws IOException {
    if (!OpenSsl.isAvailable()) {
      throw new IOException(
          "netty-tcnative (OpenSSL) is not loaded, so TLS has no ALPN and gRPC cannot connect:"
              + " put libnetty_tcnative.so on java.library.path",
          OpenSsl.unavailabilityCause());
    }
    SslContext tls =
        GrpcSslContexts.forClient()
            .sslProvider(SslProvider.OPENSSL)
            .trustManager(ca)
            .keyManager(cert, key)
            .build();
    ManagedChannel ch = NettyChannelBuilder.forAddress(host, port).sslContext(tls).build();
    return new Custos(ch, 30_000);
  }

  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private <T> T call(String rpc, Supplier<T> f) {
    try {
      return f.get();
    } catch (StatusRuntimeException e) {
      throw new CustosException(rpc, e);
    }
  }

  private KeyAdminGrpc.KeyAdminBlockingStub admin() {
    return KeyAdminGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  private SignerGrpc.SignerBlockingStub signer() {
    return SignerGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  private VerifierGrpc.VerifierBlockingStub verifier() {
    return VerifierGrpc.newBlockingStub(channel).withDeadlineAfter(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  // ---- KeyAdmin -------------------------------------------------------------------------

  /** Creates a keyset; its first key is generated inside the device. */
  public Keys.Keyset createKeyset(Keys.CreateKeysetRequest r) {
    return call("CreateKeyset", () -> admin().createKeyset(r));
  }

  /** Creates a keyset with name, algorithm, purposes and (for AS keysets) issuer. */
  public Keys.Keyset createKeyset(String name, String alg, List<String> purposes, String issuer) {
    return createKeyset(
        Keys.CreateKeysetRequest.newBuilder()
            .setName(name)
            .setAlg(alg)
            .addAllPurposes(purposes)
            .setIssuer(issuer)
            .build());
  }

  /** The keysets this caller may see. */
  public List<Keys.Keyset> listKeysets() {
    return call("ListKeysets", () -> admin().listKeysets(Keys.ListKeysetsRequest.getDefaultInstance()))
        .getKeysetsList();
  }

  /** One keyset, with its versions and policy. */
  public Keys.Keyset getKeyset(String name) {
    return call("GetKeyset", () -> admin().getKeyset(Keys.GetKeysetRequest.newBuilder().setName(name).build()));
  }

  /** The JWK Set (JSON) of one keyset, or of the issuer's own keysets when {@code keyset} is empty. */
  public String jwks(String keyset, String issuer) {
    return call(
            "GetJwks",
            () -> admin().getJwks(Keys.GetJwksRequest.newBuilder().setKeyset(keyset).setIssuer(issuer).build()))
        .getJwksJson();
  }

  /** Adds a new version (published ahead, or active at once with {@code now}). */
  public Keys.Keyset rotate(String name, boolean now) {
    return call(
        "RotateKeyset",
        () -> admin().rotateKeyset(Keys.RotateKeysetRequest.newBuilder().setName(name).setNow(now).build()));
  }

  private static Keys.VersionRequest version(String name, String kid) {
    return Keys.VersionRequest.newBuilder().setName(name).setKid(kid).build();
  }

  /** Makes a published version the signing one. */
  public Keys.Keyset activate(String name, String kid) {
    return call("ActivateVersion", () -> admin().activateVersion(version(name, kid)));
  }

  /** Stops signing with a version; it still verifies. */
  public Keys.Keyset retire(String name, String kid) {
    return call("RetireVersion", () -> admin().retireVersion(version(name, kid)));
  }

  /** Stops a version verifying too. */
  public Keys.Keyset disable(String name, String kid) {
    return call("DisableVersion", () -> admin().disableVersion(version(name, kid)));
  }

  /** Destroys a disabled version's key in the device ({@code confirm} must be true). */
  public Keys.Keyset destroy(String name, String kid, boolean confirm) {
    return call(
        "DestroyVersion",
        () ->
            admin()
                .destroyVersion(
                    Keys.DestroyVersionRequest.newBuilder().setName(name).setKid(kid).setConfirm(confirm).build()));
  }

  /** Sets the rotation policy (durations such as {@code "90d"}). */
  public Keys.Keyset setPolicy(Keys.SetPolicyRequest r) {
    return call("SetPolicy", () -> admin().setPolicy(r));
  }

  // ---- Signer ---------------------------------------------------------------------------

  /** A JWT of purpose {@code generic} or {@code userinfo}; FAPI tokens have their own calls. */
  public Signing.SignJwtResponse signJwt(String keyset, String purpose, String typ, String claimsJson) {
    return call(
        "SignJwt",
        () ->
            signer()
                .signJwt(
                    Signing.SignJwtRequest.newBuilder()
                        .setKeyset(keyset)
                        .setPurpose(purpose)
                        .setTyp(typ)
                        .setClaimsJson(claimsJson)
                        .build()));
  }

  /** Many JWTs in one call; each item is signed or carries its own error. */
  public List<Signing.BatchItem> signJwtBatch(String keyset, String purpose, List<String> claimsJson) {
    return call(
            "SignJwtBatch",
            () ->
                signer()
                    .signJwtBatch(
                        Signing.SignJwtBatchRequest.newBuilder()
                            .setKeyset(keyset)
                            .setPurpose(purpose)
                            .addAllClaimsJson(claimsJson)
                            .build()))
        .getItemsList();
  }

  /** An OpenID Connect ID token (iss, iat, and c_hash/at_hash/s_hash added by Custos). */
  public Signing.SignedToken signIdToken(Signing.SignIdTokenRequest r) {
    return call("SignIdToken", () -> signer().signIdToken(r));
  }

  /** An ID token from claims JSON. */
  public Signing.SignedToken signIdToken(String keyset, String claimsJson) {
    return signIdToken(Signing.SignIdTokenRequest.newBuilder().setKeyset(keyset).setClaimsJson(claimsJson).build());
  }

  /** A JARM authorization response. */
  public Signing.SignedToken signJarmResponse(Signing.SignJarmResponseRequest r) {
    return call("SignJarmResponse", () -> signer().signJarmResponse(r));
  }

  /** A JARM response for {@code clientId} with the response parameters as JSON. */
  public Signing.SignedToken signJarmResponse(String keyset, String clientId, String paramsJson) {
    return signJarmResponse(
        Signing.SignJarmResponseRequest.newBuilder()
            .setKeyset(keyset)
            .setClientId(clientId)
            .setParamsJson(paramsJson)
            .build());
  }

  /** A client's signed request object (JAR / PAR). */
  public Signing.SignedToken signRequestObject(Signing.SignRequestObjectRequest r) {
    return call("SignRequestObject", () -> signer().signRequestObject(r));
  }

  /** A client's {@code private_key_jwt} assertion for {@code audience}. */
  public Signing.SignedToken signClientAssertion(String keyset, String clientId, String audience) {
    return call(
        "SignClientAssertion",
        () ->
            signer()
                .signClientAssertion(
                    Signing.SignClientAssertionRequest.newBuilder()
                        .setKeyset(keyset)
                        .setClientId(clientId)
                        .setAudience(audience)
                        .build()));
  }

  /** An RFC 9068 access token, bound to a certificate or DPoP key when the request says so. */
  public Signing.SignedToken signAccessToken(Signing.SignAccessTokenRequest r) {
    return call("SignAccessToken", () -> signer().signAccessToken(r));
  }

  /** A signed RFC 9701 introspection response for {@code audience}. */
  public Signing.SignedToken signIntrospectionResponse(String keyset, String audience, String responseJson) {
    return call(
        "SignIntrospectionResponse",
        () ->
            signer()
                .signIntrospectionResponse(
                    Signing.SignIntrospectionResponseRequest.newBuilder()
                        .setKeyset(keyset)
                        .setAudience(audience)
                        .setResponseJson(responseJson)
                        .build()));
  }

  /** An RFC 9421 HTTP message signature (and Content-Digest). */
  public Signing.SignHttpMessageResponse signHttpMessage(Signing.SignHttpMessageRequest r) {
    return call("SignHttpMessage", () -> signer().signHttpMessage(r));
  }

  /** Decrypts a JWE with the keyset's key, inside the device. */
  public Signing.DecryptJweResponse decryptJwe(String keyset, String jwe) {
    return call(
        "DecryptJwe",
        () -> signer().decryptJwe(Signing.DecryptJweRequest.newBuilder().setKeyset(keyset).setJwe(jwe).build()));
  }

  // ---- Verifier -------------------------------------------------------------------------

  /** Checks an access token (RFC 9068, and its mTLS or DPoP binding). */
  public Verify.Verdict verifyAccessToken(Verify.VerifyAccessTokenRequest r) {
    return call("VerifyAccessToken", () -> verifier().verifyAccessToken(r));
  }

  /** Checks a JWS against a keyset's keys. */
  public Verify.Verdict verifyJwsWithKeyset(String token, String keyset) {
    return call(
        "VerifyJws",
        () -> verifier().verifyJws(Verify.VerifyJwsRequest.newBuilder().setToken(token).setKeyset(keyset).build()));
  }

  /** Checks a JWS against a JWK Set (JSON). */
  public Verify.Verdict verifyJwsWithJwks(String token, String jwksJson) {
    return call(
        "VerifyJws",
        () -> verifier().verifyJws(Verify.VerifyJwsRequest.newBuilder().setToken(token).setJwksJson(jwksJson).build()));
  }

  /** Checks a client's request object. */
  public Verify.Verdict verifyRequestObject(String token, String jwksJson, String clientId, String issuer) {
    return call(
        "VerifyRequestObject",
        () ->
            verifier()
                .verifyRequestObject(
                    Verify.VerifyRequestObjectRequest.newBuilder()
                        .setToken(token)
                        .setJwksJson(jwksJson)
                        .setClientId(clientId)
                        .setIssuer(issuer)
                        .build()));
  }

  /** Checks a client assertion; its {@code jti} is accepted once. */
  public Verify.Verdict verifyClientAssertion(
      String token, String jwksJson, String clientId, List<String> audiences) {
    return call(
        "VerifyClientAssertion",
        () ->
            verifier()
                .verifyClientAssertion(
                    Verify.VerifyClientAssertionRequest.newBuilder()
                        .setToken(token)
                        .setJwksJson(jwksJson)
                        .setClientId(clientId)
                        .addAllAudiences(audiences)
                        .build()));
  }

  /** Checks an RFC 9421 HTTP message signature. */
  public Verify.Verdict verifyHttpMessage(Verify.VerifyHttpMessageRequest r) {
    return call("VerifyHttpMessage", () -> verifier().verifyHttpMessage(r));
  }
}
