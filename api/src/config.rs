//! Settings: every `pgplane serve` flag and its `PGPLANE_*` variable, read
//! once at start-up into [`Settings`] and checked there. Nothing else in the
//! program reads the environment. A bad setting becomes one [`SettingError`]
//! line naming the variable and the reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::HashMap;

use crate::secret::Secret;

/// The raw command line / environment, as clap reads it. Values stay text
/// here so that every check, and its message, lives in [`Settings::from_args`].
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to serve the API on.
    #[arg(long, env = "PGPLANE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Which backend runs the databases: local or kubernetes.
    #[arg(long, env = "PGPLANE_BACKEND", default_value = "local")]
    pub backend: String,
    /// Where the local backend keeps databases, and where generated secrets are kept.
    #[arg(long, env = "PGPLANE_DATA_DIR", default_value = "pgplane-data")]
    pub data_dir: PathBuf,
    /// Kubernetes namespace of the databases (kubernetes backend).
    #[arg(long, env = "PGPLANE_NAMESPACE", default_value = "databases")]
    pub namespace: String,
    /// Kubeconfig file of the kubernetes backend (default: in-cluster, then KUBECONFIG, then ~/.kube/config).
    #[arg(long, env = "PGPLANE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Directory of the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup).
    #[arg(long, env = "PGPLANE_PG_BINDIR")]
    pub pg_bindir: Option<PathBuf>,
    /// Operating-system account that runs PostgreSQL when pgplane runs as root.
    #[arg(long, env = "PGPLANE_PG_USER", default_value = "postgres")]
    pub pg_user: String,
    /// PostgreSQL majors offered, comma separated (default: the installed major).
    #[arg(long, env = "PGPLANE_POSTGRES_VERSIONS")]
    pub postgres_versions: Option<String>,
    /// Most storage one database may ask for, a Kubernetes quantity such as 64Ti.
    #[arg(long, env = "PGPLANE_MAX_STORAGE", default_value = "64Ti")]
    pub max_storage: String,
    /// Most PostgreSQL instances the local backend runs at once, over all databases.
    #[arg(long, env = "PGPLANE_MAX_INSTANCES", default_value = "24")]
    pub max_instances: String,
    /// Revisions kept per database, 1 to 1000; older ones are pruned, the current one never.
    #[arg(long, env = "PGPLANE_REVISION_HISTORY", default_value = "20")]
    pub revision_history: String,
    /// HS256 secret for tokens, at least 32 bytes.
    #[arg(long, env = "PGPLANE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 secret.
    #[arg(long, env = "PGPLANE_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Token lifetime, e.g. 30m, 1h, 3600s.
    #[arg(long, env = "PGPLANE_TOKEN_TTL", default_value = "1h")]
    pub token_ttl: String,
    /// YAML file of users: username, argon2 password_hash, role.
    #[arg(long, env = "PGPLANE_USERS_FILE")]
    pub users_file: Option<PathBuf>,
    /// Password of the bootstrap `admin` when there is no users file.
    #[arg(long, env = "PGPLANE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Where audit records are kept and queried: local or loki.
    #[arg(long, env = "PGPLANE_AUDIT_STORE", default_value = "local")]
    pub audit_store: String,
    /// Where service events are queried: local (events.jsonl) or loki.
    #[arg(long, env = "PGPLANE_EVENT_STORE", default_value = "local")]
    pub event_store: String,
    /// Loki's base URL (a loki store, or pushing).
    #[arg(long, env = "PGPLANE_LOKI_URL")]
    pub loki_url: Option<String>,
    /// Loki stream selector of pgplane's lines, e.g. {namespace="pgplane", app="pgplane"}.
    #[arg(
        long,
        env = "PGPLANE_LOKI_SELECTOR",
        default_value = "{app=\"pgplane\"}"
    )]
    pub loki_selector: String,
    /// Also push records to Loki (for installs without a log shipper): true or false.
    #[arg(long, env = "PGPLANE_LOKI_PUSH", default_value = "false")]
    pub loki_push: String,
    /// Timeout of each request to Loki, e.g. 10s.
    #[arg(long, env = "PGPLANE_LOKI_TIMEOUT", default_value = "10s")]
    pub loki_timeout: String,
    /// Log format: json or pretty.
    #[arg(long, env = "PGPLANE_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Time a client has to send a whole request head (from its first byte,
    /// or from connecting for the first), 1s to 30s; past it: 408 and close.
    #[arg(long, env = "PGPLANE_HEADER_TIMEOUT", default_value = "10s")]
    pub header_timeout: String,
    /// Time a keep-alive connection may wait for its next request, 1s to 1h.
    #[arg(long, env = "PGPLANE_IDLE_TIMEOUT", default_value = "75s")]
    pub idle_timeout: String,
    /// Most client connections served at once (default: what the file limit
    /// leaves after pgplane's own files); past it, new ones are answered 503.
    #[arg(long, env = "PGPLANE_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Most change streams (`watch=true`, `follow=true`) open at once, 1 to
    /// 100000; past it, new ones are answered 503.
    #[arg(long, env = "PGPLANE_MAX_STREAMS", default_value = "1000")]
    pub max_streams: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Kubernetes,
}

/// Where one kind of record is queried (and, for audit records, kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A journal under the data directory.
    Local,
    /// Loki, over `PGPLANE_LOKI_URL`.
    Loki,
}

/// The settings of Loki, as a store and as the target of pushes.
#[derive(Debug, Clone)]
pub struct LokiSettings {
    /// Base URL, e.g. `http://loki.monitoring:3100`.
    pub url: String,
    /// Stream selector, e.g. `{namespace="pgplane", app="pgplane"}`.
    pub selector: String,
    /// With `PGPLANE_LOKI_PUSH=true`: the labels of the pushed stream, the
    /// selector's `name="value"` matchers.
    pub push_labels: Option<HashMap<String, String>>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Where the token-signing secret comes from.
#[derive(Debug, Clone)]
pub enum JwtSecretSource {
    Value(Secret<String>),
    File(PathBuf),
    /// Generated on first start and kept under the data directory.
    Generated,
}

/// Where the users come from.
#[derive(Debug, Clone)]
pub enum UsersSource {
    File(PathBuf),
    /// The single bootstrap `admin`, with this password or a generated one.
    BootstrapAdmin(Option<Secret<String>>),
}

/// The checked settings of `pgplane serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub backend: BackendKind,
    pub data_dir: PathBuf,
    pub namespace: String,
    pub kubeconfig: Option<PathBuf>,
    pub pg_bindir: Option<PathBuf>,
    pub pg_user: String,
    /// `None`: whatever major the local PostgreSQL binaries are.
    pub postgres_versions: Option<Vec<u32>>,
    pub max_instances: u32,
    /// Revisions kept per database.
    pub revision_history: u32,
    /// Bytes of the largest storage a database may ask for.
    pub max_storage_bytes: u128,
    pub jwt_secret: JwtSecretSource,
    pub token_ttl: Duration,
    pub users: UsersSource,
    pub audit_store: StoreKind,
    pub event_store: StoreKind,
    /// Set with a loki store, or when pushing to Loki.
    pub loki: Option<LokiSettings>,
    pub log_format: LogFormat,
    pub connections: ConnectionSettings,
    pub max_streams: u32,
}

/// How client connections are bounded in time and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// A request head must be complete this long after its first byte (the
    /// first request: after the connection was accepted).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once; [`OVERFLOW_CONNECTIONS`] more are only
    /// answered (503, or `/healthz`) and closed.
    pub max_connections: u32,
}

/// Connections past `PGPLANE_MAX_CONNECTIONS` that are still read and
/// answered (503 with `Retry-After`, or `/healthz`) rather than dropped.
pub const OVERFLOW_CONNECTIONS: u32 = 64;

/// Files pgplane keeps open beside its connections: standard streams, the
/// runtime, journals, the data directory's lock, clients of Kubernetes or
/// Loki, child processes' pipes.
pub const FILE_RESERVE: u64 = 256;

/// Files the local backend keeps per PostgreSQL instance: its pidfd, the
/// connection that watches replication, the pipes of a pg_ctl it runs.
pub const FILES_PER_INSTANCE: u64 = 8;

/// A setting that stops start-up: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("bad setting {var}: {reason}")]
pub struct SettingError {
    pub var: &'static str,
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> SettingError {
    SettingError {
        var,
        reason: reason.into(),
    }
}

impl Settings {
    pub fn from_args(args: ServeArgs) -> Result<Settings, SettingError> {
        let listen = args.listen.parse().map_err(|_| {
            bad(
                "PGPLANE_LISTEN",
                format!("{:?} is not an address such as 127.0.0.1:8080", args.listen),
            )
        })?;
        let backend = match args.backend.as_str() {
            "local" => BackendKind::Local,
            "kubernetes" => BackendKind::Kubernetes,
            other => {
                return Err(bad(
                    "PGPLANE_BACKEND",
                    format!("{other:?} is not one of local, kubernetes"),
                ))
            }
        };
        if args.data_dir.as_os_str().is_empty() {
            return Err(bad("PGPLANE_DATA_DIR", "must not be empty"));
        }
        if crate::model::check_name(&args.namespace).is_err() || args.namespace.len() > 63 {
            return Err(bad(
                "PGPLANE_NAMESPACE",
                format!("{:?} is not a Kubernetes namespace name", args.namespace),
            ));
        }
        if let Some(dir) = &args.pg_bindir {
            if !dir.join("initdb").is_file() {
                return Err(bad(
                    "PGPLANE_PG_BINDIR",
                    format!("{} has no initdb", dir.display()),
                ));
            }
        }
        if args.pg_user.is_empty() {
            return Err(bad("PGPLANE_PG_USER", "must not be empty"));
        }
        let postgres_versions = match &args.postgres_versions {
            None => None,
            Some(text) => {
                Some(parse_versions(text).map_err(|r| bad("PGPLANE_POSTGRES_VERSIONS", r))?)
            }
        };
        let max_instances = args
            .max_instances
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                bad(
                    "PGPLANE_MAX_INSTANCES",
                    format!("{:?} is not a positive integer", args.max_instances),
                )
            })?;
        let max_history = crate::model::revision::MAX_HISTORY;
        let revision_history = args
            .revision_history
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max_history).contains(n))
            .ok_or_else(|| {
                bad(
                    "PGPLANE_REVISION_HISTORY",
                    format!(
                        "{:?} is not a whole number of revisions from 1 to {max_history}",
                        args.revision_history
                    ),
                )
            })?;
        let jwt_secret =
            match (args.jwt_secret, args.jwt_secret_file) {
                (Some(_), Some(_)) => {
                    return Err(bad(
                        "PGPLANE_JWT_SECRET",
                        "set either PGPLANE_JWT_SECRET or PGPLANE_JWT_SECRET_FILE, not both",
                    ))
                }
                (Some(s), None) => {
                    if s.len() < 32 {
                        return Err(bad(
                            "PGPLANE_JWT_SECRET",
                            format!("must be at least 32 bytes (got {})", s.len()),
                        ));
                    }
                    JwtSecretSource::Value(Secret::new(s))
                }
                (None, Some(path)) => JwtSecretSource::File(path),
                // Replicas must accept each other's tokens: no secret per pod.
                (None, None) if backend == BackendKind::Kubernetes => return Err(bad(
                    "PGPLANE_JWT_SECRET",
                    "is required with the kubernetes backend (set it or PGPLANE_JWT_SECRET_FILE)",
                )),
                (None, None) => JwtSecretSource::Generated,
            };
        let token_ttl = parse_duration(&args.token_ttl)
            .filter(|d| (Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600)).contains(d))
            .ok_or_else(|| {
                bad(
                    "PGPLANE_TOKEN_TTL",
                    format!(
                        "{:?} is not a duration from 1m to 7d, such as 30m or 1h",
                        args.token_ttl
                    ),
                )
            })?;
        let users =
            match (args.users_file, args.admin_password) {
                (Some(_), Some(_)) => return Err(bad(
                    "PGPLANE_ADMIN_PASSWORD",
                    "applies only without PGPLANE_USERS_FILE; put admin in the users file instead",
                )),
                (Some(path), None) => UsersSource::File(path),
                (None, Some(p)) if p.len() < 8 => {
                    return Err(bad(
                        "PGPLANE_ADMIN_PASSWORD",
                        "must be at least 8 characters",
                    ))
                }
                (None, password) => UsersSource::BootstrapAdmin(password.map(Secret::new)),
            };
        let store = |var: &'static str, text: &str| match text {
            "local" => Ok(StoreKind::Local),
            "loki" => Ok(StoreKind::Loki),
            other => Err(bad(var, format!("{other:?} is not one of local, loki"))),
        };
        let audit_store = store("PGPLANE_AUDIT_STORE", &args.audit_store)?;
        let event_store = store("PGPLANE_EVENT_STORE", &args.event_store)?;
        let loki_push = match args.loki_push.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(bad(
                    "PGPLANE_LOKI_PUSH",
                    format!("{other:?} is not true or false"),
                ))
            }
        };
        let needs_loki = [
            (audit_store == StoreKind::Loki, "PGPLANE_AUDIT_STORE=loki"),
            (event_store == StoreKind::Loki, "PGPLANE_EVENT_STORE=loki"),
            (loki_push, "PGPLANE_LOKI_PUSH=true"),
        ]
        .into_iter()
        .find_map(|(needed, by)| needed.then_some(by));
        let loki = match (&args.loki_url, needs_loki) {
            (None, Some(by)) => {
                return Err(bad("PGPLANE_LOKI_URL", format!("is required with {by}")))
            }
            (None, None) => None,
            (Some(url), _) => {
                let parsed = reqwest::Url::parse(url).ok().filter(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                });
                if parsed.is_none() {
                    return Err(bad(
                        "PGPLANE_LOKI_URL",
                        format!("{url:?} is not an http(s) URL such as http://loki:3100"),
                    ));
                }
                let selector = args.loki_selector.trim().to_owned();
                // Querying needs a selector; pushing needs plain name="value" matchers.
                let push_labels = match selector_labels(&selector) {
                    Ok(labels) => loki_push.then_some(labels),
                    Err(why) => {
                        let needs_plain =
                            loki_push || !selector.starts_with('{') || !selector.ends_with('}');
                        if needs_plain {
                            return Err(bad("PGPLANE_LOKI_SELECTOR", why));
                        }
                        None
                    }
                };
                let timeout = parse_duration(&args.loki_timeout)
                    .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(300)).contains(d))
                    .ok_or_else(|| {
                        bad(
                            "PGPLANE_LOKI_TIMEOUT",
                            format!("{:?} is not a duration from 1s to 5m", args.loki_timeout),
                        )
                    })?;
                Some(LokiSettings {
                    url: url.clone(),
                    selector,
                    push_labels,
                    timeout,
                })
            }
        };
        let log_format = match args.log_format.as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                return Err(bad(
                    "PGPLANE_LOG_FORMAT",
                    format!("{other:?} is not one of json, pretty"),
                ))
            }
        };
        let max_storage_bytes = crate::model::quantity_bytes(args.max_storage.trim())
            .filter(|b| *b >= crate::model::spec::MIN_STORAGE_BYTES && *b < u128::MAX)
            .ok_or_else(|| {
                bad(
                    "PGPLANE_MAX_STORAGE",
                    format!(
                        "{:?} is not a Kubernetes quantity of at least 1Gi, such as 64Ti",
                        args.max_storage
                    ),
                )
            })?;
        let header_timeout = parse_duration(&args.header_timeout)
            .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(30)).contains(d))
            .ok_or_else(|| {
                bad(
                    "PGPLANE_HEADER_TIMEOUT",
                    format!("{:?} is not a duration from 1s to 30s", args.header_timeout),
                )
            })?;
        let idle_timeout = parse_duration(&args.idle_timeout)
            .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
            .ok_or_else(|| {
                bad(
                    "PGPLANE_IDLE_TIMEOUT",
                    format!("{:?} is not a duration from 1s to 1h", args.idle_timeout),
                )
            })?;
        let instance_files = match backend {
            BackendKind::Local => u64::from(max_instances) * FILES_PER_INSTANCE,
            BackendKind::Kubernetes => 0,
        };
        let max_connections = connection_bound(
            args.max_connections.as_deref(),
            open_file_limit(),
            FILE_RESERVE + instance_files,
        )
        .map_err(|r| bad("PGPLANE_MAX_CONNECTIONS", r))?;
        let max_streams = args
            .max_streams
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                bad(
                    "PGPLANE_MAX_STREAMS",
                    format!(
                        "{:?} is not a whole number from 1 to 100000",
                        args.max_streams
                    ),
                )
            })?;
        Ok(Settings {
            listen,
            backend,
            data_dir: args.data_dir,
            namespace: args.namespace,
            kubeconfig: args.kubeconfig,
            pg_bindir: args.pg_bindir,
            pg_user: args.pg_user,
            postgres_versions,
            max_instances,
            revision_history,
            max_storage_bytes,
            jwt_secret,
            token_ttl,
            users,
            audit_store,
            event_store,
            loki,
            log_format,
            connections: ConnectionSettings {
                header_timeout,
                idle_timeout,
                max_connections,
            },
            max_streams,
        })
    }
}

/// The soft limit on this process's open files (`RLIMIT_NOFILE`).
fn open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    // getrlimit cannot fail for this resource; were it to, assume the usual default.
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _hard)| soft)
}

/// `PGPLANE_MAX_CONNECTIONS` checked against the file limit: each connection
/// is a file, and so is each of the [`OVERFLOW_CONNECTIONS`] beyond it, and
/// `reserved` files stay for pgplane's own use. Unset: all the limit allows.
pub fn connection_bound(
    requested: Option<&str>,
    file_limit: u64,
    reserved: u64,
) -> Result<u32, String> {
    let room = file_limit.saturating_sub(reserved + u64::from(OVERFLOW_CONNECTIONS));
    let most = u32::try_from(room).unwrap_or(u32::MAX);
    match requested {
        None if most >= 16 => Ok(most),
        None => Err(format!(
            "the file limit (RLIMIT_NOFILE) of {file_limit} leaves room for {most} connections \
             beside pgplane's own {reserved} files; raise it (ulimit -n)"
        )),
        Some(text) => {
            let n = text
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{text:?} is not a positive integer"))?;
            if n > most {
                return Err(format!(
                    "{n} connections need {} open files with pgplane's own {reserved} and \
                     {OVERFLOW_CONNECTIONS} answered past the bound, more than the file limit \
                     (RLIMIT_NOFILE) of {file_limit}: at most {most}",
                    u64::from(n) + reserved + u64::from(OVERFLOW_CONNECTIONS)
                ));
            }
            Ok(n)
        }
    }
}

pub fn parse_versions(text: &str) -> Result<Vec<u32>, String> {
    let mut versions = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (10..=99).contains(n))
                .ok_or_else(|| format!("{:?} is not a PostgreSQL major version", v.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    versions.sort_unstable();
    versions.dedup();
    Ok(versions)
}

/// `90`, `90s`, `30m`, `1h`, `2d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The labels of a selector made only of `name="value"` matchers, which is
/// what pushed streams must carry for the selector to find them.
pub fn selector_labels(selector: &str) -> Result<HashMap<String, String>, String> {
    let bad = |why: &str| format!("{selector:?} {why}");
    let inner = selector
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| bad("is not a stream selector such as {app=\"pgplane\"}"))?;
    let mut labels = HashMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| bad("has a matcher without ="))?;
        let name = rest[..eq].trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid_name {
            return Err(bad("has a label name that is not [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let after = &rest[eq + 1..];
        let value_part = after.strip_prefix('"').ok_or_else(|| {
            bad("must use only name=\"value\" matchers to push (no =~, != or !~)")
        })?;
        let mut value = String::new();
        let mut chars = value_part.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => value.push(e),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(bad("has an escape other than \\\" \\\\ \\n")),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| bad("has an unterminated string"))?;
        labels.insert(name.to_owned(), value);
        rest = value_part[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(bad("needs a comma between matchers")),
        };
    }
    if labels.is_empty() {
        return Err(bad("has no label matcher"));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings, SettingError> {
        let cli = Cli::try_parse_from(std::iter::once("pgplane").chain(args.iter().copied()))
            .expect("flags parse");
        Settings::from_args(cli.serve)
    }

    #[test]
    fn defaults_are_valid() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.token_ttl, Duration::from_secs(3600));
        assert!(matches!(s.jwt_secret, JwtSecretSource::Generated));
        assert!(matches!(s.users, UsersSource::BootstrapAdmin(None)));
        assert_eq!(s.connections.header_timeout, Duration::from_secs(10));
        assert_eq!(s.connections.idle_timeout, Duration::from_secs(75));
        assert!(s.connections.max_connections >= 16);
    }

    #[test]
    fn the_connection_bound_leaves_room_in_the_file_limit() {
        let reserved = FILE_RESERVE + 24 * FILES_PER_INSTANCE;
        // 20,000 files: 448 reserved, 64 answered past the bound.
        assert_eq!(connection_bound(None, 20_000, reserved), Ok(19_488));
        assert_eq!(connection_bound(Some("500"), 20_000, reserved), Ok(500));
        assert_eq!(
            connection_bound(Some("19488"), 20_000, reserved),
            Ok(19_488)
        );
        let over = connection_bound(Some("19489"), 20_000, reserved).unwrap_err();
        assert!(over.contains("at most 19488"), "{over}");
        // A limit that leaves (almost) nothing is refused, not served at 0.
        assert!(connection_bound(None, 512, reserved).is_err());
        assert!(connection_bound(Some("1"), 100, reserved).is_err());
        // An unlimited limit does not overflow.
        assert_eq!(connection_bound(None, u64::MAX, reserved), Ok(u32::MAX),);
        for bad in ["0", "-1", "1.5", "", "x"] {
            assert!(
                connection_bound(Some(bad), 20_000, reserved).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "nowhere"], "PGPLANE_LISTEN"),
            (&["--backend", "cloud"], "PGPLANE_BACKEND"),
            (&["--token-ttl", "5x"], "PGPLANE_TOKEN_TTL"),
            (&["--token-ttl", "10s"], "PGPLANE_TOKEN_TTL"),
            (&["--jwt-secret", "short"], "PGPLANE_JWT_SECRET"),
            (
                &["--postgres-versions", "15,x"],
                "PGPLANE_POSTGRES_VERSIONS",
            ),
            (&["--log-format", "xml"], "PGPLANE_LOG_FORMAT"),
            (&["--max-instances", "0"], "PGPLANE_MAX_INSTANCES"),
            (&["--revision-history", "0"], "PGPLANE_REVISION_HISTORY"),
            (&["--revision-history", "many"], "PGPLANE_REVISION_HISTORY"),
            (&["--revision-history", "1001"], "PGPLANE_REVISION_HISTORY"),
            (&["--pg-bindir", "/nonexistent"], "PGPLANE_PG_BINDIR"),
            (&["--namespace", "Bad_NS"], "PGPLANE_NAMESPACE"),
            (&["--admin-password", "short"], "PGPLANE_ADMIN_PASSWORD"),
            (&["--backend", "kubernetes"], "PGPLANE_JWT_SECRET"),
            (&["--audit-store", "s3"], "PGPLANE_AUDIT_STORE"),
            (&["--audit-store", "loki"], "PGPLANE_LOKI_URL"),
            (&["--event-store", "loki"], "PGPLANE_LOKI_URL"),
            (&["--event-store", "s3"], "PGPLANE_EVENT_STORE"),
            (&["--max-storage", "1Mi"], "PGPLANE_MAX_STORAGE"),
            (&["--max-storage", "lots"], "PGPLANE_MAX_STORAGE"),
            (&["--max-storage", "1e1000"], "PGPLANE_MAX_STORAGE"),
            (&["--loki-push", "true"], "PGPLANE_LOKI_URL"),
            (&["--loki-push", "yes"], "PGPLANE_LOKI_PUSH"),
            (&["--loki-url", "loki:3100"], "PGPLANE_LOKI_URL"),
            (&["--loki-url", "ftp://loki"], "PGPLANE_LOKI_URL"),
            (
                &[
                    "--loki-url",
                    "http://loki:3100",
                    "--loki-selector",
                    "app=pgplane",
                ],
                "PGPLANE_LOKI_SELECTOR",
            ),
            (
                &[
                    "--loki-url",
                    "http://loki:3100",
                    "--loki-push",
                    "true",
                    "--loki-selector",
                    "{app=~\"pg.*\"}",
                ],
                "PGPLANE_LOKI_SELECTOR",
            ),
            (
                &["--loki-url", "http://loki:3100", "--loki-timeout", "0s"],
                "PGPLANE_LOKI_TIMEOUT",
            ),
            (&["--header-timeout", "0s"], "PGPLANE_HEADER_TIMEOUT"),
            (&["--header-timeout", "31s"], "PGPLANE_HEADER_TIMEOUT"),
            (&["--header-timeout", "ten"], "PGPLANE_HEADER_TIMEOUT"),
            (&["--idle-timeout", "0"], "PGPLANE_IDLE_TIMEOUT"),
            (&["--idle-timeout", "2h"], "PGPLANE_IDLE_TIMEOUT"),
            (&["--max-connections", "0"], "PGPLANE_MAX_CONNECTIONS"),
            (&["--max-connections", "many"], "PGPLANE_MAX_CONNECTIONS"),
        ];
        for (args, var) in cases {
            let err = settings(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.var, *var, "{args:?}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("1.5h"), None);
    }

    #[test]
    fn selectors_give_the_labels_to_push_with() {
        let l = selector_labels(r#"{namespace="pgplane", app="pgplane"}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["namespace"], "pgplane");
        let l = selector_labels(r#"{job="a\"b,c}"}"#).unwrap();
        assert_eq!(l["job"], "a\"b,c}");
        for bad in [
            "app=\"x\"",
            "{}",
            "{app=~\"x\"}",
            "{app!=\"x\"}",
            "{app=\"x\" job=\"y\"}",
            "{9app=\"x\"}",
            "{app=\"x}",
        ] {
            assert!(selector_labels(bad).is_err(), "{bad}");
        }
    }
}
