//! pgplane's connections to its servers. Management sessions log in as the
//! superuser and override the session settings a database's parameters can
//! set (read-only transactions, libraries loaded per session, timeouts), so
//! that no parameter takes a database out of pgplane's hands. Probe
//! sessions log in as `app` over TCP with no override, as the database's
//! clients do, and see what they see. [`Sessions`] keeps one of each per
//! server between the watcher's looks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tokio_postgres::{Client, Config, NoTls};

use super::super::postgres::PgError;
use super::super::HOST;

/// How long connecting (TCP and authentication) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session is kept before it is replaced by a new one: a kept
/// session does not see what only new ones get (preloaded libraries, role
/// and database settings, the CONNECT privilege), so "a client can
/// connect" is checked anew at this pace.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Settings of pgplane's own sessions that a database's parameters must
/// not change for them: with `default_transaction_read_only` pgplane could
/// not create roles; with a preloaded library that does not load it could
/// not log in at all (as superuser it may override both); timeouts would
/// cut its waits short.
const MANAGEMENT_OPTIONS: &str = "-c default_transaction_read_only=off \
     -c session_preload_libraries= -c local_preload_libraries= \
     -c statement_timeout=0 -c lock_timeout=0";

/// A new management session to the server on `port`.
pub(super) async fn connect_admin(port: u16, password: &str) -> Result<Client, PgError> {
    let mut config = Config::new();
    config
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("pgplane")
        .options(MANAGEMENT_OPTIONS);
    tokio::time::timeout(CONNECT_TIMEOUT, connect(config, port))
        .await
        .map_err(|_| PgError::NoAnswer {
            port,
            waited: CONNECT_TIMEOUT,
        })?
        .map_err(PgError::sql(port))
}

/// A new session as a client of the database: `app` on database `app`.
/// The caller bounds the time it takes (authentication included).
pub(super) async fn connect_app(
    port: u16,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = Config::new();
    config
        .user("app")
        .password(password)
        .dbname("app")
        .application_name("pgplane-probe");
    connect(config, port).await
}

async fn connect(mut config: Config, port: u16) -> Result<Client, tokio_postgres::Error> {
    config
        .host(HOST)
        .port(port)
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Sessions kept per server (by port) between looks; each is connected
/// anew only when it broke or is older than [`RENEW_EVERY`].
#[derive(Default)]
pub(super) struct Sessions {
    admin: HashMap<u16, Kept>,
    app: HashMap<u16, Kept>,
    /// The timeline of a lone primary, per port, with the postmaster it
    /// was asked of.
    timelines: HashMap<u16, (Option<Pid>, u32)>,
}

struct Kept {
    client: Client,
    since: Instant,
}

impl Kept {
    fn new(client: Client) -> Kept {
        Kept {
            client,
            since: Instant::now(),
        }
    }

    fn usable(&self) -> bool {
        !self.client.is_closed() && self.since.elapsed() < RENEW_EVERY
    }
}

impl Sessions {
    /// A management session of the server on `port`.
    pub async fn admin(&mut self, port: u16, password: &str) -> Result<&Client, PgError> {
        if !self.admin.get(&port).is_some_and(Kept::usable) {
            let client = connect_admin(port, password).await?;
            self.admin.insert(port, Kept::new(client));
        }
        Ok(&self.admin[&port].client)
    }

    /// A probe session of the server on `port`, and whether it was kept
    /// from an earlier look (rather than connected now).
    pub async fn app(
        &mut self,
        port: u16,
        password: &str,
    ) -> Result<(&Client, bool), tokio_postgres::Error> {
        let kept = self.app.get(&port).is_some_and(Kept::usable);
        if !kept {
            let client = connect_app(port, password).await?;
            self.app.insert(port, Kept::new(client));
        }
        Ok((&self.app[&port].client, kept))
    }

    /// Drops the management session of the server on `port`, after it
    /// failed a statement.
    pub fn drop_admin(&mut self, port: u16) {
        self.admin.remove(&port);
    }

    /// Drops the probe session of the server on `port`, after it failed.
    pub fn drop_probe(&mut self, port: u16) {
        self.app.remove(&port);
    }

    /// Drops every probe session: after a configuration change, the next
    /// look must see what a new client sees.
    pub fn renew_probes(&mut self) {
        self.app.clear();
    }

    /// Keeps the sessions of the servers on `ports` only.
    pub fn retain(&mut self, ports: &[u16]) {
        self.admin.retain(|p, _| ports.contains(p));
        self.app.retain(|p, _| ports.contains(p));
        self.timelines.retain(|p, _| ports.contains(p));
    }

    /// The timeline remembered for the postmaster `pid` on `port`.
    pub fn timeline(&self, port: u16, pid: Option<Pid>) -> Option<u32> {
        self.timelines
            .get(&port)
            .filter(|(of, _)| pid.is_some() && *of == pid)
            .map(|(_, timeline)| *timeline)
    }

    pub fn remember_timeline(&mut self, port: u16, pid: Option<Pid>, timeline: u32) {
        self.timelines.insert(port, (pid, timeline));
    }
}
