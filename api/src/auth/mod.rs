//! Authentication and authorization: users and roles, password checks,
//! tokens and the login rate limit. The HTTP layer calls [`Auth::login`] and
//! [`Auth::authenticate`]; the role each route needs is checked with
//! [`Caller::require`].

pub mod checker;
pub mod password;
pub mod ratelimit;
pub mod token;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::model::Role;
use checker::Checker;
use ratelimit::RateLimiter;
use token::Tokens;
pub use users::Users;

/// Burst and refill of login attempts per client address.
const PER_ADDRESS: (u32, f64) = (20, 2.0);
/// Burst and refill of login attempts per username: 10, then one every 6 s.
const PER_USERNAME: (u32, f64) = (10, 1.0 / 6.0);

/// Why a caller is not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error("the Authorization header must be Bearer <token>")]
    MalformedHeader,
    #[error("the token is invalid or expired")]
    InvalidToken,
    #[error("the token's user no longer exists")]
    UnknownUser,
    #[error("wrong username or password")]
    WrongPassword,
    #[error("too many attempts; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this needs the {} role; {username} has {}", .needed.as_str(), .has.as_str())]
    Forbidden {
        needed: Role,
        username: String,
        has: Role,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
}

impl Caller {
    /// Refuses callers below `needed`.
    pub fn require(&self, needed: Role) -> Result<(), AuthError> {
        if self.role >= needed {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                needed,
                username: self.username.clone(),
                has: self.role,
            })
        }
    }
}

pub struct Auth {
    users: Users,
    pub tokens: Tokens,
    by_address: RateLimiter<IpAddr>,
    by_username: RateLimiter<String>,
    /// Argon2 uses ~19 MiB and a core per check: on threads of their own.
    checker: Checker,
    dummy_hash: String,
}

/// A successful login.
pub struct Login {
    pub token: String,
    pub role: Role,
}

impl Auth {
    pub fn new(users: Users, tokens: Tokens) -> Arc<Auth> {
        Arc::new(Auth {
            users,
            tokens,
            by_address: RateLimiter::new(PER_ADDRESS.0, PER_ADDRESS.1),
            by_username: RateLimiter::new(PER_USERNAME.0, PER_USERNAME.1),
            checker: Checker::start(),
            dummy_hash: password::hash("timing equaliser"),
        })
    }

    /// Checks a username and password. Unknown users cost as much as known
    /// ones, so timing does not tell which names exist.
    pub async fn login(
        self: &Arc<Self>,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Login, AuthError> {
        let now = Instant::now();
        let by_address = self.by_address.take(&from, now);
        let by_username = self.by_username.take(&username.to_owned(), now);
        if let Some(wait) = [by_address.err(), by_username.err()]
            .into_iter()
            .flatten()
            .max()
        {
            return Err(AuthError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        let user = self.users.get(username).cloned();
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = self.checker.verify(password.to_owned(), hash).await;
        match user {
            Some(user) if matches => Ok(Login {
                token: self.tokens.issue(&user.username),
                role: user.role,
            }),
            _ => Err(AuthError::WrongPassword),
        }
    }

    /// Whether `username` names a user (for the audit trail, which keeps
    /// only names that exist: an unknown name may be a mistyped password).
    pub fn is_user(&self, username: &str) -> bool {
        self.users.get(username).is_some()
    }

    /// The caller a bearer token stands for; the role is the user's current one.
    pub fn authenticate(&self, bearer: &str) -> Result<Caller, AuthError> {
        let claims = self.tokens.verify(bearer).ok_or(AuthError::InvalidToken)?;
        let user = self.users.get(&claims.sub).ok_or(AuthError::UnknownUser)?;
        Ok(Caller {
            username: user.username.clone(),
            role: user.role,
        })
    }
}
