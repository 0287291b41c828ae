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
    verify_expiring(token, alg, key, sso).map(|(identity, _)| identity)
}

/// [`verify`], also giving the token's `exp` (Unix seconds): how long the identity may be
/// taken on trust ([`super::verified`]).
pub fn verify_expiring(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    sso: &SsoRow,
) -> Result<(Identity, i64), TokenError> {
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
    // Required and checked by `decode`: a number, maybe with a fraction.
    let expires_at = match claims.get("exp") {
        Some(Value::Number(exp)) => exp
            .as_i64()
            .or_else(|| exp.as_f64().map(|exp| exp.floor() as i64)),
        _ => None,
    }
    .ok_or_else(|| TokenError::Claim("exp".into()))?;
    Ok((identity(&claims, sso)?, expires_at))
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

    super::crypto::install();
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
#[path = "token_tests.rs"]
mod tests;
