//! Access tokens: HS256 JWTs that name the user and expire. Only HS256 is
//! accepted, so `alg: none` and algorithm-confusion tokens fail to verify.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtSecretSource;
use crate::secret::random_token;

const ISSUER: &str = "pgplane";

/// Seconds a token's times may be off from this clock (clock skew between
/// replicas that share the secret).
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    /// Not before; pgplane does not set it, but a token that has one must
    /// be past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Signs and checks tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {0}")]
    Read(String, #[source] std::io::Error),
    #[error("cannot write {0}")]
    Write(String, #[source] std::io::Error),
    #[error("{0} holds {1} bytes; the secret must be at least 32")]
    TooShort(String, usize),
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Reads the secret the settings name; generates and keeps one under
    /// `data_dir` when none is given.
    pub fn load_secret(source: &JwtSecretSource, data_dir: &Path) -> Result<Vec<u8>, SecretError> {
        let (path, generate) = match source {
            JwtSecretSource::Value(s) => return Ok(s.expose().as_bytes().to_vec()),
            JwtSecretSource::File(path) => (path.clone(), false),
            JwtSecretSource::Generated => (data_dir.join("jwt-secret"), true),
        };
        let shown = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let trimmed = bytes.trim_ascii_end().to_vec();
                if trimmed.len() < 32 {
                    return Err(SecretError::TooShort(shown, trimmed.len()));
                }
                Ok(trimmed)
            }
            Err(e) if generate && e.kind() == std::io::ErrorKind::NotFound => {
                let secret = random_token(48);
                crate::files::write_private(&path, secret.as_bytes())
                    .map_err(|e| SecretError::Write(shown, e))?;
                Ok(secret.into_bytes())
            }
            Err(e) => Err(SecretError::Read(shown, e)),
        }
    }

    pub fn issue(&self, username: &str) -> String {
        let now = now_secs();
        let claims = Claims {
            sub: username.to_owned(),
            iss: ISSUER.into(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            nbf: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of a valid, unexpired token signed with our secret: not
    /// issued in the future, past its `nbf`, and living no longer than the
    /// configured lifetime (a token signed for ten years is refused even
    /// though its signature is ours).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let now = now_secs();
        let issued_in_future = claims.iat > now + LEEWAY_SECS;
        let lives_too_long = claims.exp.saturating_sub(claims.iat) > self.ttl.as_secs();
        (!issued_in_future && !lives_too_long).then_some(claims)
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn issued_tokens_verify() {
        let t = Tokens::new(SECRET, Duration::from_secs(60));
        let claims = t.verify(&t.issue("alice")).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn forged_and_expired_tokens_fail() {
        let t = Tokens::new(SECRET, Duration::from_secs(60));
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert!(t.verify(&other.issue("alice")).is_none(), "wrong signature");

        let now = now_secs();
        let payload = format!(
            r#"{{"sub":"alice","iss":"pgplane","iat":{now},"exp":{}}}"#,
            now + 60
        );
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert!(t.verify(&none).is_none(), "alg none");

        let expired = Claims {
            sub: "alice".into(),
            iss: ISSUER.into(),
            iat: now - 600,
            exp: now - 120,
            nbf: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(t.verify(&token).is_none(), "expired");

        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "alice".into(),
                iss: ISSUER.into(),
                iat: now,
                exp: now + 60,
                nbf: None,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(t.verify(&hs512).is_none(), "only HS256");
        assert!(t.verify("garbage").is_none());
    }

    #[test]
    fn time_claims_are_checked() {
        let t = Tokens::new(SECRET, Duration::from_secs(3600));
        let now = now_secs();
        let signed = |iat: u64, exp: u64, nbf: Option<u64>| {
            let claims = Claims {
                sub: "alice".into(),
                iss: ISSUER.into(),
                iat,
                exp,
                nbf,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        let day = 86_400;
        let table = [
            ("fresh", signed(now, now + 3600, None), true),
            (
                "within the leeway",
                signed(now + 3, now + 3600, Some(now + 3)),
                true,
            ),
            (
                "nbf a day ahead",
                signed(now, now + 3600, Some(now + day)),
                false,
            ),
            (
                "iat a year ahead",
                signed(now + 365 * day, now + 365 * day + 60, None),
                false,
            ),
            ("ten years long", signed(now, now + 3650 * day, None), false),
            ("a second too long", signed(now, now + 3601, None), false),
        ];
        for (case, token, valid) in table {
            assert_eq!(t.verify(&token).is_some(), valid, "{case}");
        }
    }
}
