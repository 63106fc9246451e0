package custos.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.ByteString;
import custos.v1.Http;
import custos.v1.Keys;
import custos.v1.Signing;
import custos.v1.Verify;
import io.grpc.Status;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.AlgorithmParameters;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.RSAPublicKeySpec;
import java.util.Base64;
import java.util.List;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;
import javax.crypto.spec.SecretKeySpec;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * The Java client against a real custosd on SoftHSM2 over TCP with mutual TLS. Every
 * signature is checked with the JDK's own providers (SunEC, SunRsaSign, SunJCE), not by
 * Custos.
 */
public class CustosTest {
  static final String ISSUER = "https://as.bank";

  private TestDaemon daemon;
  private Custos custos;

  @Before
  public void start() throws Exception {
    daemon = new TestDaemon();
    custos = daemon.client("as");
  }

  @After
  public void stop() throws Exception {
    custos.close();
    daemon.close();
  }

  static byte[] b64d(String s) {
    return Base64.getUrlDecoder().decode(s);
  }

  static String b64(byte[] b) {
    return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
  }

  static long now() {
    return System.currentTimeMillis() / 1000;
  }

  /** An independent ES256 check (JDK SunEC) against a JWK Set; returns the claims. */
  static JsonObject verifyEs256(String jws, String jwksJson) throws Exception {
    String[] parts = jws.split("\\.");
    JsonObject header = JsonParser.parseString(new String(b64d(parts[0]), StandardCharsets.UTF_8)).getAsJsonObject();
    assertEquals("ES256", header.get("alg").getAsString());
    JsonObject jwk = null;
    for (var k : JsonParser.parseString(jwksJson).getAsJsonObject().getAsJsonArray("keys")) {
      if (k.getAsJsonObject().get("kid").getAsString().equals(header.get("kid").getAsString())) {
        jwk = k.getAsJsonObject();
      }
    }
    if (jwk == null) {
      throw new AssertionError("kid " + header.get("kid") + " is not in the JWKS");
    }
    AlgorithmParameters p = AlgorithmParameters.getInstance("EC");
    p.init(new ECGenParameterSpec("secp256r1"));
    ECPoint point =
        new ECPoint(
            new BigInteger(1, b64d(jwk.get("x").getAsString())), new BigInteger(1, b64d(jwk.get("y").getAsString())));
    PublicKey key =
        KeyFactory.getInstance("EC").generatePublic(new ECPublicKeySpec(point, p.getParameterSpec(ECParameterSpec.class)));
    Signature sig = Signature.getInstance("SHA256withECDSAinP1363Format");
    sig.initVerify(key);
    sig.update((parts[0] + "." + parts[1]).getBytes(StandardCharsets.US_ASCII));
    if (!sig.verify(b64d(parts[2]))) {
      throw new SecurityException("bad signature");
    }
    return JsonParser.parseString(new String(b64d(parts[1]), StandardCharsets.UTF_8)).getAsJsonObject();
  }

  @Test
  public void idTokenIsSignedInTheHsmAndVerifiesIndependently() throws Exception {
    custos.createKeyset("as-id", "ES256", List.of("id_token"), ISSUER);
    Signing.SignedToken t =
        custos.signIdToken(
            Signing.SignIdTokenRequest.newBuilder()
                .setKeyset("as-id")
                .setClaimsJson("{\"sub\":\"alice\",\"aud\":\"client-1\",\"exp\":" + (now() + 300) + "}")
                .setCode("abc")
                .build());
    JsonObject claims = verifyEs256(t.getToken(), custos.jwks("as-id", ""));
    assertEquals(ISSUER, claims.get("iss").getAsString());
    assertEquals("alice", claims.get("sub").getAsString());
    assertTrue("c_hash is added for the code", claims.has("c_hash"));
    JsonObject header =
        JsonParser.parseString(new String(b64d(t.getToken().split("\\.")[0]), StandardCharsets.UTF_8)).getAsJsonObject();
    assertEquals(t.getKid(), header.get("kid").getAsString());
  }

  @Test
  public void genericJwtAndBatchVerifyAndATamperedTokenIsAVerdict() throws Exception {
    custos.createKeyset("gen", "ES256", List.of("generic"), "");
    Signing.SignJwtResponse s = custos.signJwt("gen", "generic", "", "{\"hello\":\"world\"}");
    String jwks = custos.jwks("gen", "");
    assertEquals("world", verifyEs256(s.getJws(), jwks).get("hello").getAsString());
    assertTrue(custos.verifyJwsWithKeyset(s.getJws(), "gen").getValid());
    assertTrue(custos.verifyJwsWithJwks(s.getJws(), jwks).getValid());
    String[] p = s.getJws().split("\\.");
    String forged = p[0] + "." + b64("{\"hello\":\"mallory\"}".getBytes(StandardCharsets.UTF_8)) + "." + p[2];
    Verify.Verdict v = custos.verifyJwsWithKeyset(forged, "gen");
    assertFalse(v.getValid());
    assertFalse(v.getReason().isEmpty());
    assertThrows(SecurityException.class, () -> verifyEs256(forged, jwks));
    List<Signing.BatchItem> items = custos.signJwtBatch("gen", "generic", List.of("{\"i\":1}", "{\"i\":2}"));
    assertEquals(1, verifyEs256(items.get(0).getSigned().getJws(), jwks).get("i").getAsInt());
    assertEquals(2, verifyEs256(items.get(1).getSigned().getJws(), jwks).get("i").getAsInt());
  }

  @Test
  public void errorsKeepTheStatusAndTheDaemonsMessage() throws Exception {
    CustosException e = assertThrows(CustosException.class, () -> custos.signJwt("nope", "generic", "", "{}"));
    assertEquals(Status.Code.NOT_FOUND, e.code());
    assertTrue(e.detail(), e.detail().contains("nope"));
    assertEquals("SignJwt", e.rpc());
    custos.createKeyset("as-id", "ES256", List.of("id_token"), ISSUER);
    e = assertThrows(CustosException.class, () -> custos.signJwt("as-id", "id_token", "", "{}"));
    assertEquals(Status.Code.FAILED_PRECONDITION, e.code());
    e = assertThrows(CustosException.class, () -> custos.signIdToken("as-id", "[1, 2]"));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
  }

  @Test
  public void theCertificateDecidesWhoMayCall() throws Exception {
    custos.createKeyset("gen", "ES256", List.of("generic"), "");
    // A certificate from the right CA without an [[access]] rule: identified, then refused.
    try (Custos other = daemon.client("other")) {
      CustosException e = assertThrows(CustosException.class, () -> other.signJwt("gen", "generic", "", "{}"));
      assertEquals(Status.Code.PERMISSION_DENIED, e.code());
    }
    // The allowed SAN on a certificate from another CA: the handshake fails.
    try (Custos rogue = daemon.client("rogue")) {
      CustosException e = assertThrows(CustosException.class, () -> rogue.signJwt("gen", "generic", "", "{}"));
      assertEquals(Status.Code.UNAVAILABLE, e.code());
    }
  }

  @Test
  public void keyAdministrationRoundTrip() throws Exception {
    Keys.Keyset ks = custos.createKeyset("gen", "ES256", List.of("generic"), "");
    String first = ks.getVersions(0).getKid();
    Keys.Keyset rotated = custos.rotate("gen", true);
    assertNotEquals(first, rotated.getVersions(rotated.getVersionsCount() - 1).getKid());
    assertEquals(List.of("gen"), custos.listKeysets().stream().map(Keys.Keyset::getName).toList());
    Keys.Keyset policy =
        custos.setPolicy(Keys.SetPolicyRequest.newBuilder().setName("gen").setRotationPeriod("90d").build());
    assertEquals(90L * 86400, policy.getPolicy().getRotationPeriod());
    assertEquals("gen", custos.getKeyset("gen").getName());
  }

  @Test
  public void fapiTokensSignAndVerify() throws Exception {
    custos.createKeyset("as-jarm", "ES256", List.of("jarm"), ISSUER);
    custos.createKeyset("as-at", "ES256", List.of("access_token"), ISSUER);
    custos.createKeyset("as-intro", "ES256", List.of("introspection"), ISSUER);
    custos.createKeyset("client-1-ca", "ES256", List.of("client_assertion"), "");
    custos.createKeyset("client-1-ro", "ES256", List.of("request_object"), "");

    Signing.SignedToken jarm = custos.signJarmResponse("as-jarm", "client-1", "{\"code\":\"c-1\",\"state\":\"s-1\"}");
    JsonObject c = verifyEs256(jarm.getToken(), custos.jwks("as-jarm", ""));
    assertEquals(ISSUER, c.get("iss").getAsString());
    assertEquals("client-1", c.get("aud").getAsString());
    assertEquals("c-1", c.get("code").getAsString());

    Signing.SignedToken at =
        custos.signAccessToken(
            Signing.SignAccessTokenRequest.newBuilder()
                .setKeyset("as-at")
                .setClaimsJson(
                    "{\"sub\":\"alice\",\"aud\":\"https://rs.bank\",\"client_id\":\"client-1\",\"exp\":"
                        + (now() + 300)
                        + "}")
                .build());
    assertEquals("client-1", verifyEs256(at.getToken(), custos.jwks("as-at", "")).get("client_id").getAsString());
    Verify.Verdict v =
        custos.verifyAccessToken(
            Verify.VerifyAccessTokenRequest.newBuilder()
                .setToken(at.getToken())
                .setIssuer(ISSUER)
                .setAllowBearer(true)
                .build());
    assertTrue(v.toString(), v.getValid());
    assertEquals("as-at", v.getKeyset());

    Signing.SignedToken intro =
        custos.signIntrospectionResponse("as-intro", "client-1", "{\"active\":true,\"sub\":\"alice\"}");
    c = verifyEs256(intro.getToken(), custos.jwks("as-intro", ""));
    assertTrue(c.getAsJsonObject("token_introspection").get("active").getAsBoolean());

    Signing.SignedToken ca = custos.signClientAssertion("client-1-ca", "client-1", "https://as.bank/token");
    String caJwks = custos.jwks("client-1-ca", "");
    assertEquals("client-1", verifyEs256(ca.getToken(), caJwks).get("sub").getAsString());
    List<String> aud = List.of("https://as.bank/token");
    assertTrue(custos.verifyClientAssertion(ca.getToken(), caJwks, "client-1", aud).getValid());
    Verify.Verdict replayed = custos.verifyClientAssertion(ca.getToken(), caJwks, "client-1", aud);
    assertFalse("a client assertion is accepted once", replayed.getValid());

    Signing.SignedToken ro =
        custos.signRequestObject(
            Signing.SignRequestObjectRequest.newBuilder()
                .setKeyset("client-1-ro")
                .setClaimsJson(
                    "{\"iss\":\"client-1\",\"client_id\":\"client-1\",\"aud\":\"" + ISSUER + "\","
                        + "\"response_type\":\"code\",\"redirect_uri\":\"https://client/cb\",\"scope\":\"openid\"}")
                .build());
    String roJwks = custos.jwks("client-1-ro", "");
    assertEquals("openid", verifyEs256(ro.getToken(), roJwks).get("scope").getAsString());
    assertTrue(custos.verifyRequestObject(ro.getToken(), roJwks, "client-1", ISSUER).getValid());
  }

  @Test
  public void httpMessageSignatureRoundTripAndJweDecryption() throws Exception {
    custos.createKeyset("rs-http", "ES256", List.of("http_message"), "");
    Http.HttpMessage message =
        Http.HttpMessage.newBuilder()
            .setMethod("POST")
            .setTargetUri("https://rs.bank/payments")
            .addFields(Http.HttpField.newBuilder().setName("authorization").setValue("DPoP abc"))
            .addFields(Http.HttpField.newBuilder().setName("content-type").setValue("application/json"))
            .setBody(ByteString.copyFromUtf8("{\"amount\": 1}"))
            .build();
    Signing.SignHttpMessageResponse s =
        custos.signHttpMessage(Signing.SignHttpMessageRequest.newBuilder().setKeyset("rs-http").setMessage(message).build());
    assertTrue(s.getSignature().startsWith("sig1="));
    assertTrue(s.getContentDigest().startsWith("sha-256="));
    Http.HttpMessage sent =
        message.toBuilder()
            .addFields(Http.HttpField.newBuilder().setName("content-digest").setValue(s.getContentDigest()))
            .addFields(Http.HttpField.newBuilder().setName("signature-input").setValue(s.getSignatureInput()))
            .addFields(Http.HttpField.newBuilder().setName("signature").setValue(s.getSignature()))
            .build();
    assertTrue(
        custos
            .verifyHttpMessage(Verify.VerifyHttpMessageRequest.newBuilder().setMessage(sent).setKeyset("rs-http").build())
            .getValid());
    Http.HttpMessage tampered = sent.toBuilder().setBody(ByteString.copyFromUtf8("{\"amount\": 1000}")).build();
    Verify.Verdict v =
        custos.verifyHttpMessage(
            Verify.VerifyHttpMessageRequest.newBuilder().setMessage(tampered).setKeyset("rs-http").build());
    assertFalse(v.getValid());
    assertFalse(v.getReason().isEmpty());

    // A JWE (RSA-OAEP-256, A256GCM) made with the JDK's own ciphers, decrypted in the HSM.
    custos.createKeyset("as-enc", "RSA-OAEP-256", List.of("request_object_decryption"), ISSUER);
    JsonObject jwk =
        JsonParser.parseString(custos.jwks("as-enc", "")).getAsJsonObject().getAsJsonArray("keys").get(0).getAsJsonObject();
    PublicKey rsa =
        KeyFactory.getInstance("RSA")
            .generatePublic(
                new RSAPublicKeySpec(
                    new BigInteger(1, b64d(jwk.get("n").getAsString())), new BigInteger(1, b64d(jwk.get("e").getAsString()))));
    String header =
        b64(("{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\",\"kid\":\"" + jwk.get("kid").getAsString() + "\"}")
            .getBytes(StandardCharsets.UTF_8));
    SecureRandom random = new SecureRandom();
    byte[] cek = new byte[32];
    byte[] iv = new byte[12];
    random.nextBytes(cek);
    random.nextBytes(iv);
    Cipher oaep = Cipher.getInstance("RSA/ECB/OAEPPadding");
    oaep.init(
        Cipher.ENCRYPT_MODE,
        rsa,
        new OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, PSource.PSpecified.DEFAULT));
    byte[] wrapped = oaep.doFinal(cek);
    Cipher gcm = Cipher.getInstance("AES/GCM/NoPadding");
    gcm.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(cek, "AES"), new GCMParameterSpec(128, iv));
    gcm.updateAAD(header.getBytes(StandardCharsets.US_ASCII));
    byte[] sealed = gcm.doFinal("inner request object".getBytes(StandardCharsets.UTF_8));
    int n = sealed.length - 16;
    String jwe =
        String.join(
            ".",
            header,
            b64(wrapped),
            b64(iv),
            b64(java.util.Arrays.copyOfRange(sealed, 0, n)),
            b64(java.util.Arrays.copyOfRange(sealed, n, sealed.length)));
    Signing.DecryptJweResponse out = custos.decryptJwe("as-enc", jwe);
    assertEquals("inner request object", out.getPlaintext().toStringUtf8());
    assertEquals(jwk.get("kid").getAsString(), out.getKid());
  }
}
