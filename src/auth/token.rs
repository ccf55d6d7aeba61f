//! Login tokens: `v1.<user>.<expiry>.<mac>`, the user name base64url-encoded, the
//! expiry in Unix seconds, and an HMAC-SHA256 over the rest with a key drawn at start.
//! Nothing is stored server side; a restart invalidates every token (users log in again).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Signs and checks tokens with one process-wide random key.
pub struct TokenKey {
    key: hmac::Key,
}

/// Why a token was refused: the 401's reason.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired { at: u64 },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => write!(f, "malformed token"),
            TokenError::BadSignature => write!(
                f,
                "invalid token (altered, or issued before this server restarted); log in again"
            ),
            TokenError::Expired { at } => {
                write!(f, "token expired at {at} (Unix seconds); log in again")
            }
        }
    }
}

/// The system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw a random token key")]
pub struct NoRandom;

impl TokenKey {
    pub fn random() -> Result<Self, NoRandom> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| NoRandom)?;
        Ok(TokenKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// A token for `user`, valid until `expiry` (Unix seconds).
    pub fn issue(&self, user: &str, expiry: u64) -> String {
        let body = format!("v1.{}.{expiry}", B64.encode(user));
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// The user a token was issued to, if it is intact and not expired at `now`.
    pub fn check(&self, token: &str, now: u64) -> Result<String, TokenError> {
        let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(user), Some(expiry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let user = B64
            .decode(user)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(TokenError::Malformed)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
        if expiry <= now {
            return Err(TokenError::Expired { at: expiry });
        }
        Ok(user)
    }

    /// A keyed digest of a secret (for caching verified passwords without keeping them).
    pub fn digest(&self, data: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_tampering_and_garbage() {
        let key = TokenKey::random().unwrap();
        let t = key.issue("alice", 1000);
        assert_eq!(key.check(&t, 999), Ok("alice".into()));
        assert_eq!(key.check(&t, 1000), Err(TokenError::Expired { at: 1000 }));

        // Another server's key, or a changed user or expiry: refused.
        let other = TokenKey::random().unwrap();
        assert_eq!(other.check(&t, 0), Err(TokenError::BadSignature));
        let forged = t.replacen(&B64.encode("alice"), &B64.encode("admin"), 1);
        assert_eq!(key.check(&forged, 0), Err(TokenError::BadSignature));
        let later = t.replacen(".1000.", ".99999.", 1);
        assert_eq!(key.check(&later, 0), Err(TokenError::BadSignature));

        for junk in [
            "",
            ".",
            "v1",
            "v1.a.b",
            "v2.YWxpY2U.1000.AAAA",
            "v1.YWxpY2U.notanumber.AAAA",
            "v1.!!!.1000.AAAA",
            "v1.YWxpY2U.1000.!!!",
            "v1.YWxpY2U.1000.x.AAAA",
            "\u{0}\u{ffff}",
        ] {
            assert_eq!(key.check(junk, 0), Err(TokenError::Malformed), "{junk:?}");
        }
    }
}
