//! Operator tokens: HS256 JWTs carrying `sub`, `role`, `district` and `exp`.
//!
//! The same token authenticates the websocket and the HTTP API. Tokens are
//! checked before any websocket upgrade so that an unauthenticated client
//! never costs us a connection task.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, Uri};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What an operator may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// IOC wall screen and operators: the whole city, callers masked.
    Ioc,
    /// Dispatcher console: the whole city, callers visible, may assign.
    Dispatcher,
    /// District centre: only its own district, callers masked.
    District,
}

impl Role {
    /// The wire name, also a bounded log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ioc => "ioc",
            Role::Dispatcher => "dispatcher",
            Role::District => "district",
        }
    }

    /// Only dispatchers see callers' phone numbers.
    pub fn sees_callers(self) -> bool {
        self == Role::Dispatcher
    }
}

/// The claims of an operator token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Operator id; becomes `issued_by` of the commands they send.
    pub sub: String,
    pub role: Role,
    /// Zone id, required for role `district`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    /// Expiry, seconds since the Unix epoch; connections close when it passes.
    pub exp: u64,
}

impl Claims {
    /// The district this operator is confined to, if any.
    pub fn own_district(&self) -> Option<&str> {
        match self.role {
            Role::District => self.district.as_deref(),
            _ => None,
        }
    }

    /// Whether this operator may see data of `district` (None = outside every zone).
    pub fn may_see_district(&self, district: Option<&str>) -> bool {
        match self.role {
            Role::Ioc | Role::Dispatcher => true,
            Role::District => district.is_some() && district == self.district.as_deref(),
        }
    }
}

/// Why a token was refused or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed authorization header: expected `Bearer <token>`")]
    MalformedHeader,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token with role district has no district claim")]
    MissingDistrict,
    #[error("cannot mint token: {0}")]
    Mint(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints an HS256 token that expires `ttl_secs` from now.
pub fn mint_token(
    secret: &str,
    sub: &str,
    role: Role,
    district: Option<&str>,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    if role == Role::District && district.is_none() {
        return Err(AuthError::MissingDistrict);
    }
    let claims = Claims {
        sub: sub.to_string(),
        role,
        district: district.map(str::to_string),
        exp: now_secs().saturating_add(ttl_secs),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Mint(e.to_string()))
}

/// Verifies an HS256 token (no other algorithm is accepted) and its expiry,
/// with no leeway: a connection is closed exactly when `exp` passes, so the
/// handshake must agree with that.
pub fn verify(secret: &str, token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid(e.to_string().to_lowercase()),
    })?;
    let claims = data.claims;
    // jsonwebtoken accepts exp == now; we close connections at exp, so refuse it.
    if claims.exp <= now_secs() {
        return Err(AuthError::Expired);
    }
    if claims.role == Role::District && claims.district.as_deref().is_none_or(str::is_empty) {
        return Err(AuthError::MissingDistrict);
    }
    Ok(claims)
}

/// Finds the token of a request: `Authorization: Bearer <jwt>` first, else
/// the `access_token` query parameter (browsers cannot set headers on a
/// websocket).
pub(crate) fn token_from_request<'a>(
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Result<&'a str, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::MalformedHeader)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        return Ok(token);
    }
    uri.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

/// Verifies the token of a request.
pub(crate) fn authenticate(
    secret: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Claims, AuthError> {
    verify(secret, token_from_request(headers, uri)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";

    #[test]
    fn mints_and_verifies_a_round_trip() {
        let t = mint_token(SECRET, "op-1", Role::District, Some("hai_chau"), 60).unwrap();
        let c = verify(SECRET, &t).unwrap();
        assert_eq!(c.sub, "op-1");
        assert_eq!(c.role, Role::District);
        assert_eq!(c.own_district(), Some("hai_chau"));
    }

    #[test]
    fn refuses_wrong_secret_garbage_and_expired() {
        let t = mint_token(SECRET, "op-1", Role::Ioc, None, 60).unwrap();
        assert!(matches!(verify("other", &t), Err(AuthError::Invalid(_))));
        assert!(matches!(
            verify(SECRET, "a.b.c"),
            Err(AuthError::Invalid(_))
        ));
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "x".into(),
                role: Role::Ioc,
                district: None,
                exp: now_secs() - 10,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(SECRET, &expired), Err(AuthError::Expired));
    }

    #[test]
    fn refuses_other_algorithms() {
        let claims = Claims {
            sub: "x".into(),
            role: Role::Ioc,
            district: None,
            exp: now_secs() + 60,
        };
        let t = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(verify(SECRET, &t).is_err());
    }

    #[test]
    fn district_role_needs_a_district() {
        assert_eq!(
            mint_token(SECRET, "x", Role::District, None, 60),
            Err(AuthError::MissingDistrict)
        );
        let t = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "x".into(),
                role: Role::District,
                district: None,
                exp: now_secs() + 60,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify(SECRET, &t), Err(AuthError::MissingDistrict));
    }

    #[test]
    fn finds_token_in_header_or_query() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/ws?x=1&access_token=abc".parse().unwrap();
        assert_eq!(token_from_request(&headers, &uri), Ok("abc"));
        headers.insert(header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token_from_request(&headers, &uri), Ok("xyz"));
        headers.insert(header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(
            token_from_request(&headers, &uri),
            Err(AuthError::MalformedHeader)
        );
        let bare: Uri = "/ws".parse().unwrap();
        assert_eq!(
            token_from_request(&HeaderMap::new(), &bare),
            Err(AuthError::Missing)
        );
    }
}
