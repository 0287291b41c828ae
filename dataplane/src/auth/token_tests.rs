//! Unit tests of [`super`]: the token rules, one forgery at a time.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::catalog::SsoRow;
use phoenix_catalog::sso::RoleGrant;

const ISSUER: &str = "https://idp.example/realms/mercy";

fn key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("test_rsa.pem")).expect("test key")
}

fn jwk(key: &EncodingKey) -> Jwk {
    Jwk::from_encoding_key(key, Algorithm::RS256).expect("public jwk")
}

fn sso() -> SsoRow {
    SsoRow {
        idp_name: "mercy".into(),
        role_mapping: vec![
            RoleGrant {
                group: "physicians".into(),
                role: "physician".into(),
            },
            RoleGrant {
                group: "nurses".into(),
                role: "nurse".into(),
            },
        ],
        ..crate::catalog::test_sso(ISSUER)
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": ["phoenix-dataplane", "account"], "sub": "alice-id",
        "email": "alice@mercy.example", "name": "Alice", "groups": ["physicians"],
        "exp": now() + 300, "iat": now(), "nbf": now() - 5,
    })
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    encode(&header, claims, &key()).expect("signed")
}

fn check(token: &str, sso: &SsoRow) -> Result<Identity, TokenError> {
    let (alg, kid) = inspect_header(token)?;
    assert_eq!(kid, "k1");
    let decoding = key_for(alg, &jwk(&key()))?;
    verify(token, alg, &decoding, sso)
}

fn with(change: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut claims = claims();
    change(claims.as_object_mut().expect("object"));
    sign(&claims)
}

#[test]
fn a_genuine_token_gives_the_user_and_roles_from_groups() {
    let identity = check(&sign(&claims()), &sso()).expect("valid");
    assert_eq!(identity.subject, "alice-id");
    assert_eq!(identity.email.as_deref(), Some("alice@mercy.example"));
    assert_eq!(identity.name.as_deref(), Some("Alice"));
    assert_eq!(identity.roles, vec!["physician".to_owned()]);
}

#[test]
fn expiry_and_not_before_allow_only_the_leeway() {
    let skew = i64::try_from(LEEWAY_SECONDS).expect("small");
    let expired = with(|c| {
        c.insert("exp".into(), json!(now() - skew - 10));
    });
    assert_eq!(check(&expired, &sso()), Err(TokenError::Expired));
    let just_expired = with(|c| {
        c.insert("exp".into(), json!(now() - skew / 2));
    });
    assert!(check(&just_expired, &sso()).is_ok());
    let early = with(|c| {
        c.insert("nbf".into(), json!(now() + skew + 60));
    });
    assert_eq!(check(&early, &sso()), Err(TokenError::NotYetValid));
    let no_exp = with(|c| {
        c.remove("exp");
    });
    assert_eq!(check(&no_exp, &sso()), Err(TokenError::Claim("exp".into())));
}

#[test]
fn issuer_and_audience_must_be_the_tenants() {
    let other_issuer = with(|c| {
        c.insert("iss".into(), json!("https://idp.example/realms/st-lukes"));
    });
    assert_eq!(check(&other_issuer, &sso()), Err(TokenError::Issuer));
    let other_aud = with(|c| {
        c.insert("aud".into(), json!("account"));
    });
    assert_eq!(check(&other_aud, &sso()), Err(TokenError::Audience));
    let no_aud = with(|c| {
        c.remove("aud");
    });
    assert_eq!(check(&no_aud, &sso()), Err(TokenError::Claim("aud".into())));
    let no_sub = with(|c| {
        c.remove("sub");
    });
    assert_eq!(check(&no_sub, &sso()), Err(TokenError::Claim("sub".into())));
}

#[test]
fn another_issuer_is_refused_before_any_key_is_looked_up() {
    let token = with(|c| {
        c.insert("iss".into(), json!("https://idp.example/realms/st-lukes"));
    });
    assert_eq!(precheck_issuer(&token, ISSUER), Err(TokenError::Issuer));
    assert_eq!(precheck_issuer(&sign(&claims()), ISSUER), Ok(()));
    let no_iss = with(|c| {
        c.remove("iss");
    });
    assert_eq!(
        precheck_issuer(&no_iss, ISSUER),
        Err(TokenError::Claim("iss".into()))
    );
}

#[test]
fn only_access_tokens_are_accepted() {
    let id_token = with(|c| {
        c.insert("typ".into(), json!("ID"));
    });
    assert_eq!(check(&id_token, &sso()), Err(TokenError::NotAccessToken));
    let access = with(|c| {
        c.insert("typ".into(), json!("Bearer"));
    });
    assert!(check(&access, &sso()).is_ok());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    header.typ = Some("logout+jwt".into());
    let logout = encode(&header, &claims(), &key()).expect("signed");
    assert_eq!(inspect_header(&logout), Err(TokenError::NotAccessToken));
    header.typ = Some("at+jwt".into());
    let rfc9068 = encode(&header, &claims(), &key()).expect("signed");
    assert!(check(&rfc9068, &sso()).is_ok());
}

fn check_id(token: &str, nonce: &str) -> Result<Identity, TokenError> {
    let mut sso = sso();
    sso.allowed_email_domains = vec!["mercy.example".into()];
    let (alg, _) = inspect_header(token)?;
    let decoding = key_for(alg, &jwk(&key()))?;
    verify_id_token(token, alg, &decoding, &sso, nonce)
}

fn id_token(change: impl FnOnce(&mut Map<String, Value>)) -> String {
    with(|c| {
        c.insert("typ".into(), json!("ID"));
        c.insert("aud".into(), json!("phoenix-dataplane"));
        c.insert("azp".into(), json!("phoenix-dataplane"));
        c.insert("nonce".into(), json!("n-123"));
        change(c);
    })
}

#[test]
fn an_id_token_must_carry_the_logins_nonce_and_the_client_as_audience() {
    let identity = check_id(&id_token(|_| {}), "n-123").expect("valid");
    assert_eq!(identity.roles, ["physician"]);
    assert_eq!(
        check_id(&id_token(|_| {}), "n-other"),
        Err(TokenError::Claim("nonce".into()))
    );
    let no_nonce = id_token(|c| {
        c.remove("nonce");
    });
    assert_eq!(
        check_id(&no_nonce, ""),
        Err(TokenError::Claim("nonce".into()))
    );
    let other_client = id_token(|c| {
        c.insert("aud".into(), json!("other-client"));
    });
    assert_eq!(check_id(&other_client, "n-123"), Err(TokenError::Audience));
    let other_azp = id_token(|c| {
        c.insert("azp".into(), json!("other-client"));
    });
    assert_eq!(check_id(&other_azp, "n-123"), Err(TokenError::Audience));
    let access = id_token(|c| {
        c.insert("typ".into(), json!("Bearer"));
    });
    assert_eq!(
        check_id(&access, "n-123"),
        Err(TokenError::Claim("typ".into()))
    );
    let expired = id_token(|c| {
        c.insert("exp".into(), json!(now() - 120));
    });
    assert_eq!(check_id(&expired, "n-123"), Err(TokenError::Expired));
    let foreign = id_token(|c| {
        c.insert("email".into(), json!("eve@elsewhere.example"));
    });
    assert_eq!(check_id(&foreign, "n-123"), Err(TokenError::EmailDomain));
}

#[test]
fn a_tampered_payload_fails_the_signature() {
    let token = sign(&claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let forged = sign(&json!({"iss": ISSUER, "groups": ["admins"]}));
    parts[1] = forged.split('.').nth(1).expect("payload").to_owned();
    assert_eq!(check(&parts.join("."), &sso()), Err(TokenError::Signature));
}

#[test]
fn headers_with_their_own_key_or_a_weak_algorithm_are_refused() {
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = sign(&claims());
    let rest = token.split_once('.').expect("dot").1;
    let with_header = |h: Value| format!("{}.{rest}", b64(h));
    assert_eq!(
        inspect_header(&with_header(json!({"alg": "none", "kid": "k1"}))),
        Err(TokenError::Malformed)
    );
    assert_eq!(
        inspect_header(&with_header(json!({"alg": "HS256", "kid": "k1"}))),
        Err(TokenError::Algorithm)
    );
    for (name, value) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("x5c", json!(["MIIB"])),
        ("jwk", serde_json::to_value(jwk(&key())).expect("jwk")),
    ] {
        let header = json!({"alg": "RS256", "kid": "k1", name: value});
        assert_eq!(
            inspect_header(&with_header(header)),
            Err(TokenError::EmbeddedKey),
            "{name}"
        );
    }
    assert_eq!(
        inspect_header(&with_header(json!({"alg": "RS256"}))),
        Err(TokenError::NoKeyId)
    );
    assert_eq!(inspect_header("abc"), Err(TokenError::Malformed));
}

#[test]
fn a_key_must_fit_the_algorithm() {
    let rsa = jwk(&key());
    assert!(key_for(Algorithm::RS256, &rsa).is_ok());
    // The JWK declares RS256: PS256 with it is refused.
    assert!(matches!(
        key_for(Algorithm::PS256, &rsa),
        Err(TokenError::KeyMismatch)
    ));
    let mut undeclared = rsa.clone();
    undeclared.common.key_algorithm = None;
    assert!(key_for(Algorithm::PS256, &undeclared).is_ok());
    assert!(matches!(
        key_for(Algorithm::ES256, &undeclared),
        Err(TokenError::KeyMismatch)
    ));
    assert!(matches!(
        key_for(Algorithm::EdDSA, &undeclared),
        Err(TokenError::KeyMismatch)
    ));
}

#[test]
fn a_token_signed_by_another_key_fails() {
    let other = EncodingKey::from_rsa_pem(include_bytes!("test_rsa_other.pem")).expect("test key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = encode(&header, &claims(), &other).expect("signed");
    assert_eq!(check(&token, &sso()), Err(TokenError::Signature));
}

#[test]
fn allowed_email_domains_are_enforced_when_set() {
    let mut only_mercy = sso();
    only_mercy.allowed_email_domains = vec!["Mercy.Example".into()];
    assert!(check(&sign(&claims()), &only_mercy).is_ok());
    let outsider = with(|c| {
        c.insert("email".into(), json!("eve@evil.example"));
    });
    assert_eq!(check(&outsider, &only_mercy), Err(TokenError::EmailDomain));
    let none = with(|c| {
        c.remove("email");
    });
    assert_eq!(
        check(&none, &only_mercy),
        Err(TokenError::Claim("email".into()))
    );
    assert!(!email_domain_allowed(
        "a@sub.mercy.example",
        &only_mercy.allowed_email_domains
    ));
    assert!(!email_domain_allowed(
        "@mercy.example",
        &only_mercy.allowed_email_domains
    ));
}

#[test]
fn roles_come_from_mapped_groups_only_and_accept_group_paths() {
    let sso = sso();
    assert_eq!(
        roles(&["/nurses", "physicians", "physicians", "janitors"], &sso),
        vec!["nurse".to_owned(), "physician".to_owned()]
    );
    assert!(roles(&[], &sso).is_empty());
}
