//! The checks of a bearer JWT, free of I/O: what the header may say, whether a key fits the
//! algorithm, and the signature and claims against a tenant's SSO settings.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::catalog::SsoRow;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The algorithms a token may be signed with: asymmetric only. `none` and HS* never, so a
/// public key can never be used as an HMAC secret.
pub const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a token is refused. The text goes to the client (`error_description`) and to the
/// log; it never contains the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No usable `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// Not a JWS compact token, or its header does not parse (`alg: none` included).
    #[error("the token is not a well-formed signed JWT")]
    Malformed,
    /// The algorithm is not an allowed asymmetric one.
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// The header carries its own key or a pointer to one.
    #[error("the token names its own key (jwk, jku, x5u or x5c); keys come from the issuer only")]
    EmbeddedKey,
    /// The header names no `kid`.
    #[error("the token names no key id")]
    NoKeyId,
    /// The tenant has no SSO settings.
    #[error("this tenant accepts no bearer tokens")]
    NoSso,
    /// The issuer publishes no such key.
    #[error("the token's key is not one of the issuer's")]
    UnknownKey,
    /// The key exists but not for this algorithm.
    #[error("the token's key does not fit its algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the tenant's issuer.
    #[error("the token was not issued by this tenant's identity provider")]
    Issuer,
    /// `aud` names none of the tenant's audiences.
    #[error("the token is not meant for this service")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("the token lacks the claim {0}")]
    Claim(String),
    /// The token is not an access token (an ID, refresh or logout token of the same IdP).
    #[error("the token is not an access token")]
    NotAccessToken,
    /// The email's domain is not allowed for this tenant.
    #[error("the user's email domain is not allowed for this tenant")]
    EmailDomain,
    /// The identity is not (or no longer) an active provisioned user of the tenant.
    #[error("the token's user has no active account in this tenant")]
    NotProvisioned,
    /// The session cookie names no live session of this tenant (ended, revoked, unknown).
    #[error("the session has ended or is not valid; log in again")]
    Session,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The subject claim.
    pub subject: String,
    /// The email claim, if any.
    pub email: Option<String>,
    /// The display name claim, if any.
    pub name: Option<String>,
    /// Platform roles granted by the user's groups, sorted, without duplicates.
    pub roles: Vec<String>,
}

/// The token's algorithm and key id, after the header checks that need no key.
pub fn inspect_header(token: &str) -> Result<(Algorithm, String), TokenError> {
    if token.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    // Unknown algorithms (`none` included) do not parse.
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !ALLOWED.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    // RFC 9068 access tokens say `at+jwt`; others `JWT` or nothing. Anything else (a
    // logout token, an encrypted or nested token) is not for this API.
    if let Some(typ) = header.typ.as_deref()
        && !["jwt", "at+jwt", "application/at+jwt"].contains(&typ.to_ascii_lowercase().as_str())
    {
        return Err(TokenError::NotAccessToken);
    }
    if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some()
    {
        return Err(TokenError::EmbeddedKey);
    }
    let kid = header.kid.filter(|kid| !kid.is_empty());
    Ok((header.alg, kid.ok_or(TokenError::NoKeyId)?))
}

/// Refuses, before any key is looked up, a token whose (still unverified) `iss` is not
/// `issuer`: a token of another tenant's IdP is told so, and never makes this tenant's
/// JWKS be refetched for its unknown `kid`. [`verify`] checks `iss` again, signed.
pub fn precheck_issuer(token: &str, issuer: &str) -> Result<(), TokenError> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
        .map_err(|_| TokenError::Malformed)?;
    match claims.iss {
        Some(iss) if iss == issuer => Ok(()),
        Some(_) => Err(TokenError::Issuer),
        None => Err(TokenError::Claim("iss".into())),
    }
}

/// The decoding key of `jwk` if its type (and curve, and declared `alg`) fits `alg`.
pub fn key_for(alg: Algorithm, jwk: &Jwk) -> Result<DecodingKey, TokenError> {
    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != format!("{alg:?}")
    {
        return Err(TokenError::KeyMismatch);
    }
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if !fits {
        return Err(TokenError::KeyMismatch);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| TokenError::KeyMismatch)
}

/// Verifies the signature with `key` and the claims against `sso`; maps groups to roles.
pub fn verify(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    sso: &SsoRow,
) -> Result<Identity, TokenError> {
    let audiences: &[String] = if sso.audiences.is_empty() {
        std::slice::from_ref(&sso.client_id)
    } else {
        &sso.audiences
    };
    let claims = decode(token, alg, key, &sso.issuer, audiences)?;
    // An ID token carries the same issuer and (as aud) the client id; it proves a login to
    // the client, not a grant to call the API. Keycloak names the kind in `typ`.
    if let Some(kind) = claims.get("typ")
        && !kind
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("bearer"))
    {
        return Err(TokenError::NotAccessToken);
    }
    identity(&claims, sso)
}

/// Verifies an ID token of a browser login (OpenID Connect Core 1.0, section 3.1.3.7): the
/// same signature, issuer and time checks as a bearer token, `aud` naming the client id,
/// `azp` (when present) the client id, and `nonce` the login's. Maps groups to roles and
/// enforces the allowed email domains like [`verify`].
pub fn verify_id_token(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    sso: &SsoRow,
    nonce: &str,
) -> Result<Identity, TokenError> {
    let claims = decode(
        token,
        alg,
        key,
        &sso.issuer,
        std::slice::from_ref(&sso.client_id),
    )?;
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(sso.client_id.as_str())
    {
        return Err(TokenError::Audience);
    }
    // Keycloak says `ID`; other providers say nothing. An access token is not an ID token.
    if let Some(kind) = claims.get("typ")
        && !kind.as_str().is_some_and(|k| k.eq_ignore_ascii_case("id"))
    {
        return Err(TokenError::Claim("typ".into()));
    }
    // Both values are random and public to the browser; comparing them needs no constant
    // time, but a missing nonce is never taken as a match.
    match claims.get("nonce").and_then(Value::as_str) {
        Some(found) if !nonce.is_empty() && found == nonce => {}
        _ => return Err(TokenError::Claim("nonce".into())),
    }
    identity(&claims, sso)
}

// The signature with `key` and the registered claims: `iss`, one of `audiences`, `exp`, `nbf`.
fn decode(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    issuer: &str,
    audiences: &[String],
) -> Result<Map<String, Value>, TokenError> {
    use jsonwebtoken::errors::ErrorKind;

    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(audiences);

    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation).map_err(|error| {
            match error.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::MissingRequiredClaim(claim) => TokenError::Claim(claim.clone()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::Algorithm
                }
                ErrorKind::InvalidKeyFormat
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey => TokenError::KeyMismatch,
                _ => TokenError::Malformed,
            }
        })?;
    Ok(data.claims)
}

fn identity(claims: &Map<String, Value>, sso: &SsoRow) -> Result<Identity, TokenError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let subject = text(&sso.claim_subject)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Claim(sso.claim_subject.clone()))?;
    let email = text(&sso.claim_email);
    if !sso.allowed_email_domains.is_empty() {
        let email = email
            .as_deref()
            .ok_or_else(|| TokenError::Claim(sso.claim_email.clone()))?;
        if !email_domain_allowed(email, &sso.allowed_email_domains) {
            return Err(TokenError::EmailDomain);
        }
    }
    let groups: Vec<&str> = match claims.get(&sso.claim_groups) {
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    Ok(Identity {
        subject,
        email,
        name: text(&sso.claim_name),
        roles: roles(&groups, sso),
    })
}

/// Whether `email`'s domain is one of `allowed` (case-insensitive, exact domain).
pub fn email_domain_allowed(email: &str, allowed: &[String]) -> bool {
    match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => allowed
            .iter()
            .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain)),
        _ => false,
    }
}

/// The roles `groups` are granted by `sso.role_mapping`. A group given as a path
/// (`/physicians`, Keycloak's full path) matches its plain name too.
pub fn roles(groups: &[&str], sso: &SsoRow) -> Vec<String> {
    let mut roles: Vec<String> = sso
        .role_mapping
        .iter()
        .filter(|grant| {
            groups
                .iter()
                .any(|g| *g == grant.group || g.strip_prefix('/') == Some(grant.group.as_str()))
        })
        .map(|grant| grant.role.clone())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::catalog::SsoRow;
    use phoenix_catalog::sso::{Protocol, RoleGrant};

    const ISSUER: &str = "https://idp.example/realms/mercy";

    fn key() -> EncodingKey {
        EncodingKey::from_rsa_pem(include_bytes!("test_rsa.pem")).expect("test key")
    }

    fn jwk(key: &EncodingKey) -> Jwk {
        Jwk::from_encoding_key(key, Algorithm::RS256).expect("public jwk")
    }

    fn sso() -> SsoRow {
        SsoRow {
            idp_uid: "uid".into(),
            idp_name: "mercy".into(),
            protocol: Protocol::Oidc,
            issuer: ISSUER.into(),
            jwks_uri: format!("{ISSUER}/certs"),
            client_id: "phoenix-dataplane".into(),
            audiences: vec!["phoenix-dataplane".into()],
            claim_subject: "sub".into(),
            claim_email: "email".into(),
            claim_groups: "groups".into(),
            claim_name: "name".into(),
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
            allowed_email_domains: vec![],
            scim_enabled: false,
            generation: 1,
            authorization_endpoint: None,
            token_endpoint: None,
            end_session_endpoint: None,
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
        let other =
            EncodingKey::from_rsa_pem(include_bytes!("test_rsa_other.pem")).expect("test key");
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
}
