//! pgplane's management connections to its servers: the superuser over
//! TCP, bounded in time.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::super::postgres::PgError;
use super::super::HOST;

/// How long connecting (TCP and authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A new management session to the server on `port`.
pub(super) async fn connect_admin(port: u16, password: &str) -> Result<Client, PgError> {
    let mut config = Config::new();
    config
        .host(HOST)
        .port(port)
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .application_name("pgplane")
        .connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| PgError::NoAnswer {
            port,
            waited: CONNECT_TIMEOUT,
        })?
        .map_err(PgError::sql(port))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
