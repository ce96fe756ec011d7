//! A database's parameters on its servers: `pgplane.user.conf` written on
//! every instance, the configuration reloaded, and the servers restarted
//! when a changed parameter needs it (primary first: a standby whose
//! settings fall below the primary's pauses until it is restarted too).
//! The values were checked by PostgreSQL itself when the API accepted them.

use std::sync::Arc;

use super::super::postgres::PgError;
use super::super::record::DatabaseRecord;
use super::super::{Entry, Inner};
use super::config_files::{user_conf, USER_CONF};
use super::servers::{exists, server_status, write_owned, ServerStatus};
use super::sessions::{connect_admin, Sessions};

/// Writes the parameters to every instance, reloads, and restarts when a
/// changed parameter needs it.
pub(super) async fn apply(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    sessions: &mut Sessions,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    let pg = &inner.pg;
    let primary = record.primary().expect("bootstrapped");
    let mut order = vec![primary.clone()];
    order.extend(record.standbys());
    let text = user_conf(&record.spec.parameters);
    for i in &order {
        let pgdata = entry.paths.pgdata(i.ordinal);
        if exists(&pgdata.join("PG_VERSION")).await {
            write_owned(inner, &pgdata.join(USER_CONF), text.as_bytes()).await?;
            if server_status(&pgdata).await != ServerStatus::Stopped {
                pg.reload(&pgdata).await?;
            }
        }
    }
    let client = connect_admin(primary.port, &entry.secrets.superuser).await?;
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE pending_restart",
            &[],
        )
        .await
        .map_err(PgError::sql(primary.port))?
        .get(0);
    drop(client);
    if pending > 0 {
        for i in &order {
            let pgdata = entry.paths.pgdata(i.ordinal);
            if server_status(&pgdata).await != ServerStatus::Stopped {
                pg.restart(&pgdata, &entry.paths.log(i.ordinal)).await?;
            }
        }
    }
    // What only new sessions get (preloaded libraries) is seen by new ones.
    sessions.renew_probes();
    entry
        .update_record(|r| r.applied_parameters = record.spec.parameters.clone())
        .await?;
    Ok(())
}
