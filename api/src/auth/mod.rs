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
use std::time::{Duration, Instant};

use crate::model::Role;
use checker::Checker;
use ratelimit::{RateLimiter, RecentFailures};
use token::Tokens;
pub use users::Users;

/// Burst and refill of failed logins per client address: 20, then one
/// every 3 s (20 a minute).
const PER_ADDRESS: (u32, f64) = (20, 1.0 / 3.0);
/// Burst and refill of failed logins per username: 10, then one every 6 s.
const PER_USERNAME: (u32, f64) = (10, 1.0 / 6.0);
/// How long an address that failed a login counts as having failed: while
/// a username is limited, only addresses without a failure this recent may
/// still try it (so its user is not locked out by someone else's guesses),
/// and each such address gets one guess per this long.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

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

/// The key an address is limited by: IPv4 addresses one by one, IPv6 by
/// their /64, which one host is commonly given whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn limited(wait: Duration) -> AuthError {
    AuthError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
    /// When the caller's token expires, in seconds since the epoch: a
    /// stream it opened ends then.
    pub expires_at: u64,
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
    failed_recently: RecentFailures<IpAddr>,
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
            failed_recently: RecentFailures::new(FAILURE_MEMORY),
            checker: Checker::start(),
            dummy_hash: password::hash("timing equaliser"),
        })
    }

    /// Checks a username and password. Unknown users cost as much as known
    /// ones, so timing does not tell which names exist.
    ///
    /// What is limited is failures, per address and per username; each
    /// attempt holds a token of both until it turns out to be a success,
    /// which gives them back. Once a username has no failures left, only an
    /// address that has not failed within [`FAILURE_MEMORY`] may still try
    /// it: its user logs in from a clean address whatever others guessed,
    /// and an attacker gets one more guess per address per memory.
    pub async fn login(
        self: &Arc<Self>,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Login, AuthError> {
        let address = address_key(from);
        let name = username.to_owned();
        let now = Instant::now();
        if let Err(wait) = self.by_address.take(&address, now) {
            return Err(limited(wait));
        }
        let by_username = self.by_username.take(&name, now);
        if let Err(wait) = by_username {
            if self.failed_recently.failed_recently(&address, now) {
                self.by_address.give_back(&address, now);
                return Err(limited(wait));
            }
        }
        let user = self.users.get(username).cloned();
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.clone(), |u| u.password_hash.clone());
        let matches = self.checker.verify(password.to_owned(), hash).await;
        let now = Instant::now();
        match user {
            Some(user) if matches => {
                self.by_address.give_back(&address, now);
                if by_username.is_ok() {
                    self.by_username.give_back(&name, now);
                }
                Ok(Login {
                    token: self.tokens.issue(&user.username),
                    role: user.role,
                })
            }
            _ => {
                self.failed_recently.record(&address, now);
                Err(AuthError::WrongPassword)
            }
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
            expires_at: claims.exp,
        })
    }
}
