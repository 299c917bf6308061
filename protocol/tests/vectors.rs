//! Published test vectors: W3C did:key, RFC 8032, Wycheproof Ed25519, RFC 8785 (JCS).
//! Sources and licences: tests/vectors/README.md.

use std::path::PathBuf;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ioap_protocol::did::DidError;
use ioap_protocol::signing::canonicalize;
use ioap_protocol::{Did, Identity};
use serde_json::Value;

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn seed(text: &str) -> [u8; 32] {
    hex(text).try_into().expect("32-byte seed")
}

fn b58_32(text: &str) -> [u8; 32] {
    bs58::decode(text)
        .into_vec()
        .expect("base58")
        .try_into()
        .expect("32 bytes")
}

fn b64url_32(text: &str) -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
        .try_into()
        .expect("32 bytes")
}

#[test]
fn w3c_did_key_vectors_all_five() {
    let vectors = json("did-key-ed25519-x25519.json");
    let vectors = vectors.as_object().expect("object");
    assert_eq!(vectors.len(), 5);
    for (expected_did, case) in vectors {
        let identity = Identity::from_seed(&seed(case["seed"].as_str().expect("seed")));
        let did = identity.did();
        assert_eq!(&did.to_string(), expected_did);
        assert_eq!(Did::parse(expected_did), Ok(did));

        let verification = &case["verificationKeyPair"];
        let agreement = &case["keyAgreementKeyPair"];
        let (ed_public, x_public, x_private) = match verification["type"].as_str() {
            Some("Ed25519VerificationKey2018") => (
                b58_32(verification["publicKeyBase58"].as_str().expect("pk")),
                b58_32(agreement["publicKeyBase58"].as_str().expect("x pk")),
                b58_32(agreement["privateKeyBase58"].as_str().expect("x sk")),
            ),
            Some("JsonWebKey2020") => (
                b64url_32(verification["publicKeyJwk"]["x"].as_str().expect("x")),
                b64url_32(agreement["publicKeyJwk"]["x"].as_str().expect("x")),
                b64url_32(agreement["privateKeyJwk"]["d"].as_str().expect("d")),
            ),
            other => panic!("unexpected key type {other:?}"),
        };
        assert_eq!(did.public_key_bytes(), &ed_public);
        assert_eq!(did.x25519_public_key().as_bytes(), &x_public);
        assert_eq!(identity.x25519_secret().to_bytes(), x_private);
        assert_eq!(
            x25519_dalek::PublicKey::from(&identity.x25519_secret()).as_bytes(),
            &x_public
        );
        let agreement_id = agreement["id"].as_str().expect("id");
        let fragment = agreement_id.rsplit('#').next().expect("fragment");
        assert_eq!(did.x25519_public_key_multibase(), fragment);
    }
}

#[test]
fn derived_x25519_keys_agree() {
    let a = Identity::from_seed(&[11; 32]);
    let b = Identity::from_seed(&[12; 32]);
    let ab = a
        .x25519_secret()
        .diffie_hellman(&b.did().x25519_public_key());
    let ba = b
        .x25519_secret()
        .diffie_hellman(&a.did().x25519_public_key());
    assert_eq!(ab.as_bytes(), ba.as_bytes());
}

#[test]
fn w3c_x25519_did_keys_are_not_ed25519_dids() {
    let vectors = json("did-key-x25519.json");
    let mut checked = 0;
    for did in vectors["didDocument"].as_object().expect("object").keys() {
        if did.starts_with("did:key:") {
            assert_eq!(Did::parse(did), Err(DidError::WrongMulticodec(0xec, 0x01)));
            checked += 1;
        }
    }
    assert!(checked > 0, "no X25519 did:key in the vector file");
}

#[test]
fn rfc8032_section_7_1_all_cases() {
    let vectors = json("rfc8032-ed25519-section7.1.json");
    let cases = vectors["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let sk = seed(case["secret_key"].as_str().expect("sk"));
        let pk = hex(case["public_key"].as_str().expect("pk"));
        let msg = hex(case["message"].as_str().expect("msg"));
        let sig = hex(case["signature"].as_str().expect("sig"));
        let identity = Identity::from_seed(&sk);
        assert_eq!(identity.did().public_key_bytes().as_slice(), pk, "{name}");
        let signing = SigningKey::from_bytes(&sk);
        let signature = signing.sign(&msg);
        assert_eq!(signature.to_bytes().as_slice(), sig, "{name}");
        identity
            .did()
            .verifying_key()
            .verify_strict(&msg, &signature)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Verifies the way ioap does: the key must be a valid non-weak did:key, then verify_strict.
fn ioap_accepts(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(pk) = <[u8; 32]>::try_from(pk) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    match Did::from_public_key_bytes(pk) {
        Ok(did) => did
            .verifying_key()
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .is_ok(),
        Err(_) => false,
    }
}

#[test]
fn wycheproof_ed25519_every_case_agrees_with_verify_strict() {
    let vectors = json("wycheproof-ed25519_test.json");
    let mut total = 0;
    for group in vectors["testGroups"].as_array().expect("groups") {
        let pk = hex(group["publicKey"]["pk"].as_str().expect("pk"));
        for test in group["tests"].as_array().expect("tests") {
            let id = &test["tcId"];
            let msg = hex(test["msg"].as_str().expect("msg"));
            let sig = hex(test["sig"].as_str().expect("sig"));
            let expected = match test["result"].as_str() {
                Some("valid") => true,
                Some("invalid") => false,
                other => panic!("tcId {id}: unexpected result {other:?}"),
            };
            let strict = <[u8; 32]>::try_from(pk.as_slice())
                .ok()
                .and_then(|pk| VerifyingKey::from_bytes(&pk).ok())
                .zip(<[u8; 64]>::try_from(sig.as_slice()).ok())
                .is_some_and(|(key, sig)| {
                    key.verify_strict(&msg, &Signature::from_bytes(&sig))
                        .is_ok()
                });
            assert_eq!(strict, expected, "verify_strict disagrees on tcId {id}");
            assert_eq!(
                ioap_accepts(&pk, &msg, &sig),
                expected,
                "ioap disagrees on tcId {id}"
            );
            total += 1;
        }
    }
    assert_eq!(total, 151);
}

#[test]
fn jcs_every_file_byte_for_byte() {
    let names = [
        "arrays",
        "french",
        "structures",
        "unicode",
        "values",
        "weird",
    ];
    for name in names {
        let input: Value =
            serde_json::from_slice(&read(&format!("jcs/input/{name}.json"))).expect("input");
        let expected = read(&format!("jcs/output/{name}.json"));
        let canonical = canonicalize(&input);
        assert_eq!(
            String::from_utf8_lossy(&canonical),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        let outhex = String::from_utf8(read(&format!("jcs/outhex/{name}.txt"))).expect("utf8");
        let outhex: String = outhex.split_whitespace().collect();
        assert_eq!(canonical, hex(&outhex), "{name} (hex)");
    }
}

#[test]
fn jcs_es6_number_formatting_every_line() {
    let text = String::from_utf8(read("jcs/es6numbers-10k.txt")).expect("utf8");
    let mut lines = 0;
    for line in text.lines() {
        let (bits, expected) = line.split_once(',').expect("hex,expected");
        let value = f64::from_bits(u64::from_str_radix(bits, 16).expect("hex"));
        let number = serde_json::Number::from_f64(value).expect("finite");
        let canonical = canonicalize(&Value::Number(number));
        assert_eq!(
            std::str::from_utf8(&canonical).expect("utf8"),
            expected,
            "{bits}"
        );
        lines += 1;
    }
    assert_eq!(lines, 10_000);
}
