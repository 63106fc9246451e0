//! The published examples of RFC 9421 (Appendix B and section 2.4) as unit
//! tests: every signature base byte for byte, every published signature
//! verified with the published key, and Ed25519 (deterministic) re-signed.

use super::base::{self, SignatureParams};
use super::check;
use super::component::Component;
use super::keys;
use super::message::Message;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde_json::{json, Map, Value};

const REQUEST_DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
const RESPONSE_DIGEST: &str = "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:";

const RSA_PSS_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----";

const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----";

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn ecc_jwk() -> Map<String, Value> {
    obj(json!({"kty":"EC","crv":"P-256",
        "x":"qIVYZVLCrPZHGHjP17CTW0_-D9Lfw0EkjqF7xB4FivA",
        "y":"Mc4nN9LTDOBhfoUeg8Ye9WedFRhnZXZJA12Qp0zZ6F0"}))
}

fn ed25519_jwk() -> Map<String, Value> {
    obj(json!({"kty":"OKP","crv":"Ed25519","x":"JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"}))
}

fn rsa_pss_jwk() -> Map<String, Value> {
    let rsa = openssl::rsa::Rsa::public_key_from_pem(RSA_PSS_PUBLIC.as_bytes()).unwrap();
    obj(json!({"kty":"RSA",
        "n": B64URL.encode(rsa.n().to_vec()),
        "e": B64URL.encode(rsa.e().to_vec())}))
}

/// RFC 9421 B.2's test-request.
fn test_request() -> Message {
    Message {
        method: Some("POST".into()),
        target_uri: Some("https://example.com/foo?param=Value&Pet=dog".into()),
        status: None,
        fields: vec![
            ("Host".into(), "example.com".into()),
            ("Date".into(), "Tue, 20 Apr 2021 02:07:55 GMT".into()),
            ("Content-Type".into(), "application/json".into()),
            ("Content-Digest".into(), REQUEST_DIGEST.into()),
            ("Content-Length".into(), "18".into()),
        ],
        body: Some(br#"{"hello": "world"}"#.to_vec()),
    }
}

/// RFC 9421 B.2's test-response.
fn test_response() -> Message {
    Message {
        status: Some(200),
        fields: vec![
            ("Date".into(), "Tue, 20 Apr 2021 02:07:56 GMT".into()),
            ("Content-Type".into(), "application/json".into()),
            ("Content-Digest".into(), RESPONSE_DIGEST.into()),
            ("Content-Length".into(), "23".into()),
        ],
        body: Some(br#"{"message": "good dog"}"#.to_vec()),
        ..Message::default()
    }
}

fn signed(mut m: Message, input: &str, signature: &str) -> Message {
    m.fields.push(("Signature-Input".into(), input.into()));
    m.fields.push(("Signature".into(), signature.into()));
    m
}

/// Reads the signature out of `m`, checks the base byte for byte, and
/// verifies the published signature with the published key.
fn check_vector(
    m: &Message,
    request: Option<&Message>,
    expected_base: &str,
    jwk: &Map<String, Value>,
) {
    let rec = check::received(m, request, None, None).unwrap();
    assert_eq!(rec.base, expected_base);
    keys::verify(jwk, None, rec.base.as_bytes(), &rec.signature).unwrap();
    let mut tampered = rec.signature.clone();
    tampered[10] ^= 1;
    assert!(keys::verify(jwk, None, rec.base.as_bytes(), &tampered).is_err());
}

#[test]
fn b_2_1_minimal_rsa_pss_sha512() {
    let m = signed(
        test_request(),
        r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
    );
    check_vector(
        &m,
        None,
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        &rsa_pss_jwk(),
    );
}

#[test]
fn b_2_3_full_coverage_rsa_pss_sha512() {
    let m = signed(
        test_request(),
        r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
        "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
    );
    let base = format!(
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-digest\": {REQUEST_DIGEST}\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\""
    );
    check_vector(&m, None, &base, &rsa_pss_jwk());
}

#[test]
fn b_2_4_response_ecdsa_p256_sha256() {
    let m = signed(
        test_response(),
        r#"sig-b24=("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256""#,
        "sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==:",
    );
    let base = format!(
        "\"@status\": 200\n\"content-type\": application/json\n\"content-digest\": {RESPONSE_DIGEST}\n\"content-length\": 23\n\"@signature-params\": (\"@status\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-ecc-p256\""
    );
    check_vector(&m, None, &base, &ecc_jwk());
    // The published body matches its digest; a changed body does not.
    let rec = check::received(&m, None, None, None).unwrap();
    let policy = check::Policy {
        now: 1618884473,
        max_age: 60,
        skew: 0,
        required: vec![Component::named("@status").unwrap()],
        tag: None,
    };
    check::apply(&rec, &m, &policy).unwrap();
    let mut changed = m.clone();
    changed.body = Some(br#"{"message": "bad dog!"}"#.to_vec());
    assert_eq!(
        check::apply(&rec, &changed, &policy).unwrap_err().reason,
        crate::verdict::Reason::DigestMismatch
    );
}

#[test]
fn b_2_6_ed25519_signs_identically() {
    let components: Vec<Component> = [
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ]
    .iter()
    .map(|c| Component::parse(c).unwrap())
    .collect();
    let params = SignatureParams {
        created: 1618884473,
        expires: None,
        keyid: "test-key-ed25519".into(),
        alg: None,
        tag: None,
    };
    let input = base::signature_input("sig-b26", &components, &params).unwrap();
    assert_eq!(
        input,
        r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#
    );
    let line = base::params_line(&input, "sig-b26").unwrap();
    let sb = base::signature_base(&components, &test_request(), None, line).unwrap();
    assert_eq!(
        sb,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let key = openssl::pkey::PKey::private_key_from_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let mut signer = openssl::sign::Signer::new_without_digest(&key).unwrap();
    let sig = signer.sign_oneshot_to_vec(sb.as_bytes()).unwrap();
    let field = base::signature_field("sig-b26", &sig).unwrap();
    assert_eq!(
        field,
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
    );
    let m = signed(test_request(), &input, &field);
    check_vector(&m, None, &sb, &ed25519_jwk());
}

/// Section 2.4: a response signature covering request components with `req`.
#[test]
fn section_2_4_response_covers_request_components() {
    let response = Message {
        status: Some(503),
        fields: vec![
            ("Date".into(), "Tue, 20 Apr 2021 02:07:56 GMT".into()),
            ("Content-Type".into(), "application/json".into()),
            ("Content-Length".into(), "62".into()),
            ("Content-Digest".into(), "sha-512=:0Y6iCBzGg5rZtoXS95Ijz03mslf6KAMCloESHObfwnHJDbkkWWQz6PhhU9kxsTbARtY2PTBOzq24uJFpHsMuAg==:".into()),
        ],
        body: Some(br#"{"busy": true, "message": "Your call is very important to us"}"#.to_vec()),
        ..Message::default()
    };
    let m = signed(
        response,
        r#"reqres=("@status" "content-digest" "content-type" "@authority";req "@method";req "@path";req "content-digest";req);created=1618884479;keyid="test-key-ecc-p256""#,
        "reqres=:dMT/A/76ehrdBTD/2Xx8QuKV6FoyzEP/I9hdzKN8LQJLNgzU4W767HK05rx1i8meNQQgQPgQp8wq2ive3tV5Ag==:",
    );
    let base = format!(
        "\"@status\": 503\n\"content-digest\": sha-512=:0Y6iCBzGg5rZtoXS95Ijz03mslf6KAMCloESHObfwnHJDbkkWWQz6PhhU9kxsTbARtY2PTBOzq24uJFpHsMuAg==:\n\"content-type\": application/json\n\"@authority\";req: example.com\n\"@method\";req: POST\n\"@path\";req: /foo\n\"content-digest\";req: {REQUEST_DIGEST}\n\"@signature-params\": (\"@status\" \"content-digest\" \"content-type\" \"@authority\";req \"@method\";req \"@path\";req \"content-digest\";req);created=1618884479;keyid=\"test-key-ecc-p256\""
    );
    let request = test_request();
    check_vector(&m, Some(&request), &base, &ecc_jwk());
    // Without the request, the req components cannot be rebuilt.
    assert!(check::received(&m, None, None, None).is_err());
    // With a different request, the signature no longer verifies.
    let mut other = test_request();
    other.method = Some("PUT".into());
    let rec = check::received(&m, Some(&other), None, None).unwrap();
    assert!(keys::verify(&ecc_jwk(), None, rec.base.as_bytes(), &rec.signature).is_err());
}

#[test]
fn algorithm_confusion_is_refused() {
    let m = signed(
        test_response(),
        r#"sig-b24=("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256""#,
        "sig-b24=:wNmSUAhwb5LxtOtOpNa6W5xj067m5hFrj0XQ4fvpaCLx0NKocgPquLgyahnzDnDAUy5eCdlYUEkLIj+32oiasw==:",
    );
    let rec = check::received(&m, None, None, None).unwrap();
    use crate::verdict::Reason;
    let err = |alg| {
        keys::verify(&ecc_jwk(), Some(alg), rec.base.as_bytes(), &rec.signature)
            .unwrap_err()
            .reason
    };
    assert_eq!(err("ed25519"), Reason::AlgMismatch);
    assert_eq!(err("hmac-sha256"), Reason::AlgNotAllowed);
    assert_eq!(err("rsa-v1_5-sha256"), Reason::AlgNotAllowed);
    assert!(keys::verify(
        &ecc_jwk(),
        Some("ecdsa-p256-sha256"),
        rec.base.as_bytes(),
        &rec.signature
    )
    .is_ok());
}
