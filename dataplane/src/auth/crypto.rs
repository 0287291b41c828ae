//! The cryptography behind token signatures: RSA verification (RS256/384/512, PS256/384/512,
//! the keys nearly every IdP signs with) by `ring`, everything else by the RustCrypto
//! provider `jsonwebtoken` ships.
//!
//! Why: verifying an RS256 signature with RustCrypto's `rsa` crate took 28 % of the data
//! plane's CPU at a constant 1,000 Patient reads per second (perf, docs/benchmarks.md,
//! "Clinical API under load"); `ring` (already linked for TLS) does the same verification
//! in a fraction of that. `ring` also refuses RSA moduli under 2048 bits, which NIST has
//! not allowed since 2013: such a key is reported as not one of the issuer's usable keys.
//!
//! The provider is installed once per process by [`install`], which token verification
//! calls before its first use; nothing else changes how tokens are checked.

use std::sync::{Once, OnceLock};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as ring_sig, RsaParameters, RsaPublicKeyComponents};

/// The smallest RSA modulus accepted, in bits (ring's own floor, checked up front so the
/// error says it).
pub const MIN_RSA_BITS: usize = 2048;

/// Installs the provider for this process, once; later calls do nothing. Another provider
/// installed first (by a test, say) stays: tokens are then checked the same way, slower.
pub fn install() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let provider = PROVIDER.get_or_init(|| CryptoProvider {
            signer_factory: signer,
            verifier_factory: verifier,
            key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
        });
        if provider.install_default().is_err() {
            tracing::warn!(
                "another JWT crypto provider was installed first; RSA tokens are verified by it"
            );
        }
    });
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let params = match algorithm {
        Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    };
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            // A JWK's `n` has no leading zero octets (RFC 7518 §6.3.1.1); tolerate them.
            let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
            let n = n[first..].to_vec();
            let bits = n.first().map_or(0, |top| {
                (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
            });
            if bits < MIN_RSA_BITS {
                return Err(ErrorKind::InvalidRsaKey(format!(
                    "an RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"
                ))
                .into());
            }
            Ok(Box::new(RingRsa {
                algorithm: *algorithm,
                params,
                n,
                e: e.clone(),
            }))
        }
        // A DER key (never from a JWKS): RustCrypto, as before.
        DecodingKeyKind::SecretOrDer(_) => {
            (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key)
        }
    }
}

/// An RSA public key from a JWK, verified by `ring`.
struct RingRsa {
    algorithm: Algorithm,
    params: &'static RsaParameters,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Verifier<Vec<u8>> for RingRsa {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), SignatureError> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(self.params, message, signature)
        .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for RingRsa {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{Header, Validation};
    use serde_json::{Map, Value, json};

    fn keys() -> (EncodingKey, DecodingKey) {
        let encoding = EncodingKey::from_rsa_pem(include_bytes!("test_rsa.pem")).expect("test key");
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).expect("jwk");
        (encoding, DecodingKey::from_jwk(&jwk).expect("decoding key"))
    }

    // Verifies `token`'s signature with this module's verifier (not whichever provider
    // the process has installed).
    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> bool {
        use base64::Engine;
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url");
        let verifier = verifier(&alg, key).expect("an RSA verifier");
        assert_eq!(verifier.algorithm(), alg);
        verifier.verify(message.as_bytes(), &signature).is_ok()
    }

    fn sign(alg: Algorithm, sub: &str, key: &EncodingKey) -> String {
        let claims = json!({"sub": sub, "exp": 4_000_000_000_u64});
        jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("sign")
    }

    const RSA: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    #[test]
    fn ring_verifies_what_rustcrypto_signed_and_refuses_a_changed_token() {
        let (encoding, decoding) = keys();
        for alg in RSA {
            let token = sign(alg, "alice", &encoding);
            assert!(
                verify(&token, &decoding, alg),
                "{alg:?}: a good signature verifies"
            );
            // Alice's signature over Mallory's claims.
            let other = sign(alg, "mallory", &encoding);
            let parts: Vec<&str> = token.split('.').collect();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                other.split('.').nth(1).unwrap(),
                parts[2]
            );
            assert!(
                !verify(&forged, &decoding, alg),
                "{alg:?}: a changed token fails"
            );
            // The right signature checked under another hash.
            let wrong_hash = if alg == Algorithm::RS256 {
                Algorithm::RS512
            } else {
                Algorithm::RS256
            };
            assert!(
                !verify(&token, &decoding, wrong_hash),
                "{alg:?} checked as {wrong_hash:?}"
            );
        }
    }

    #[test]
    fn installed_it_decodes_and_refuses_as_jsonwebtoken_does() {
        install();
        let (encoding, decoding) = keys();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        let token = sign(Algorithm::RS256, "alice", &encoding);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(&token, &decoding, &validation)
            .expect("decodes")
            .claims;
        assert_eq!(claims["sub"], "alice");
        let other = EncodingKey::from_rsa_pem(include_bytes!("test_rsa_other.pem")).expect("key");
        let foreign = sign(Algorithm::RS256, "alice", &other);
        let error = jsonwebtoken::decode::<Map<String, Value>>(&foreign, &decoding, &validation)
            .expect_err("another key's signature");
        assert_eq!(error.kind(), &ErrorKind::InvalidSignature);
    }

    #[test]
    fn a_key_of_another_issuer_does_not_verify() {
        let (encoding, _) = keys();
        let other = EncodingKey::from_rsa_pem(include_bytes!("test_rsa_other.pem")).expect("key");
        let other_jwk = Jwk::from_encoding_key(&other, Algorithm::RS256).expect("jwk");
        let other_key = DecodingKey::from_jwk(&other_jwk).expect("key");
        for alg in RSA {
            assert!(
                !verify(&sign(alg, "alice", &encoding), &other_key, alg),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn short_rsa_keys_are_refused_with_their_size() {
        // A 1024-bit modulus (any odd value of that size: the size check comes first).
        let mut n = vec![0xC5_u8; 128];
        n[127] |= 1;
        let key = DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]);
        let error = verifier(&Algorithm::RS256, &key)
            .err()
            .expect("a 1024-bit key is refused");
        match error.kind() {
            ErrorKind::InvalidRsaKey(message) => {
                assert!(message.contains("1024 bits"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        // Leading zero octets do not count.
        let mut padded = vec![0_u8, 0];
        padded.extend(vec![0xC5_u8; 256]);
        assert!(
            verifier(
                &Algorithm::RS256,
                &DecodingKey::from_rsa_raw_components(&padded, &[1, 0, 1])
            )
            .is_ok()
        );
    }
}
