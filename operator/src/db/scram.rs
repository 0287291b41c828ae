//! SCRAM-SHA-256 password verifiers (RFC 5802 / RFC 7677, as PostgreSQL stores them).
//!
//! The operator sets passwords as verifiers it computed itself, so the clear text never
//! travels in a DDL statement (which PostgreSQL may log), and it can tell whether a role's
//! stored verifier matches the password in a Secret without changing anything.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A fresh verifier of `password` with a random salt (PostgreSQL's default 4096 iterations).
pub fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Whether `stored` (a `pg_authid.rolpassword`) is a SCRAM-SHA-256 verifier of `password`.
/// Anything else (MD5, clear text, malformed) does not match.
pub fn matches(stored: &str, password: &str) -> bool {
    let Some(parsed) = parse(stored) else {
        return false;
    };
    let (stored_key, server_key) = keys(&prepare(password), &parsed.salt, parsed.iterations);
    // Both are public-ish hashes; a timing difference reveals nothing usable.
    stored_key == parsed.stored_key && server_key == parsed.server_key
}

struct Parsed {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
fn parse(stored: &str) -> Option<Parsed> {
    let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
    Some(Parsed {
        iterations,
        salt: STANDARD.decode(salt).ok()?,
        stored_key: STANDARD.decode(stored_key).ok()?,
        server_key: STANDARD.decode(server_key).ok()?,
    })
}

// SASLprep when the password allows it, else the raw bytes (as libpq and the server do).
fn prepare(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

fn hmac(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().into()
}

// PBKDF2-HMAC-SHA-256 with one 32-byte block (SCRAM's Hi()), then the two keys.
fn keys(password: &[u8], salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac(password, &[&u]);
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key = Sha256::digest(client_key).to_vec();
    let server_key = hmac(&salted, &[b"Server Key"]).to_vec();
    (stored_key, server_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_verifier_matches_its_password_only() {
        let v = verifier("correct horse");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("correct horse"));
        assert!(matches(&v, "correct horse"));
        assert!(!matches(&v, "correct horse "));
        assert_ne!(verifier("correct horse"), v, "salts differ");
    }

    #[test]
    fn other_formats_never_match() {
        assert!(!matches("md5abcdef", "x"));
        assert!(!matches("x", "x"));
        assert!(!matches("SCRAM-SHA-256$0:AA==$AA==:AA==", "x"));
        assert!(!matches("SCRAM-SHA-256$4096:not base64$x:y", "x"));
    }
}
