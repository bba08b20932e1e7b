//! JWT access tokens: HS256 only (a token announcing any other algorithm, `none` included, is
//! refused before its signature is looked at), short-lived, carrying the user's id and role.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::error::ApiError;
use qtm_store::now;

/// Access token lifetime: 15 minutes.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Lifetime of the short token that carries a password check to the TOTP step.
pub const MFA_TTL_SECS: i64 = 5 * 60;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id, as a decimal string (JWT's `sub` is a string).
    pub sub: String,
    /// Username (for logs and the audit trail).
    pub name: String,
    pub role: Role,
    /// `access`, or `mfa` for the half-logged-in state between password and TOTP code.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique id, so two tokens issued in the same second differ.
    pub jti: String,
    /// The user's token version when issued; a token below the user's current version was
    /// ended by a logout or a password or role change.
    #[serde(default)]
    pub ver: i64,
}

impl Claims {
    /// The user id in `sub`.
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Signing and verification keys from one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret must never reach a log.
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// Keys for an HS256 secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A signed token of type `typ` valid for `ttl` seconds, under the user's token version
    /// `ver`.
    pub fn issue(
        &self,
        user_id: i64,
        name: &str,
        role: Role,
        ver: i64,
        typ: &str,
        ttl: i64,
    ) -> String {
        let t = now();
        let claims = Claims {
            sub: user_id.to_string(),
            name: name.to_string(),
            role,
            typ: typ.to_string(),
            iat: t,
            exp: t + ttl,
            jti: super::random_token("")[..16].to_string(),
            ver,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verify a token of type `typ`; the error says why it was refused.
    pub fn verify(&self, token: &str, typ: &str) -> Result<Claims, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            ApiError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired: log in again or refresh",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token algorithm not accepted (HS256 only)",
                _ => "token is malformed",
            })
        })?;
        if data.claims.user_id().is_none() {
            return Err(ApiError::unauthorized("token is malformed"));
        }
        if data.claims.typ != typ {
            return Err(ApiError::unauthorized(format!(
                "a {} token cannot be used here",
                data.claims.typ
            )));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let keys = JwtKeys::new(b"test secret");
        let t = keys.issue(7, "ann", Role::Trader, 0, "access", 60);
        let c = keys.verify(&t, "access").unwrap();
        assert_eq!(
            (c.user_id(), c.role, c.name.as_str()),
            (Some(7), Role::Trader, "ann")
        );
        assert_eq!(
            keys.verify(&t, "mfa").unwrap_err().message,
            "a access token cannot be used here"
        );
        let expired = keys.issue(7, "ann", Role::Trader, 0, "access", -60);
        assert_eq!(
            keys.verify(&expired, "access").unwrap_err().message,
            "token expired: log in again or refresh"
        );
        let forged = JwtKeys::new(b"other").issue(7, "ann", Role::Admin, 0, "access", 60);
        assert_eq!(
            keys.verify(&forged, "access").unwrap_err().message,
            "token signature is invalid"
        );
        let claims = format!(
            r#"{{"sub":"7","name":"ann","role":"admin","typ":"access","iat":0,"exp":{},"jti":"x"}}"#,
            now() + 60
        );
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
        assert!(keys.verify(&none, "access").is_err());
        assert!(keys.verify("garbage", "access").is_err());
    }
}
