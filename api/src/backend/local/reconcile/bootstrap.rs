//! Making a database's primary from nothing: initdb, pgplane's
//! configuration files, the first start, then the roles and the `app`
//! database. The primary starts on pgplane's defaults alone; the
//! database's parameters are applied next like any later change (see
//! [`super::parameters`]), so parameters it cannot run with are undone
//! there instead of leaving a primary that never starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::postgres::{PgError, REPLICATION_USER};
use super::super::record::DatabaseRecord;
use super::super::{Entry, Inner};
use super::config_files::{
    includes, managed_conf, user_conf, DEFAULTS, DEFAULTS_CONF, HBA, HBA_CONF, MANAGED_CONF,
    USER_CONF,
};
use super::servers::{fresh_instance_dir, write_owned};
use super::sessions::connect_admin;

/// Makes the primary. Anything a crashed earlier try left is removed
/// first, since nothing of value exists before the bootstrap ends.
pub(super) async fn init_primary(
    inner: &Arc<Inner>,
    entry: &Arc<Entry>,
    record: &DatabaseRecord,
) -> Result<(), PgError> {
    let pg = &inner.pg;
    let primary = record.primary().expect("a new record has its primary");
    let dir = entry.paths.instance_dir(primary.ordinal);
    let pgdata = entry.paths.pgdata(primary.ordinal);
    fresh_instance_dir(inner, &dir, &pgdata).await?;
    let pwfile = dir.join("pwfile");
    write_owned(inner, &pwfile, entry.secrets.superuser.as_bytes()).await?;
    let made = pg.initdb(&pgdata, &pwfile).await;
    tokio::fs::remove_file(&pwfile)
        .await
        .map_err(PgError::file("remove", &pwfile))?;
    made?;
    let name = entry.paths.instance_name(primary.ordinal);
    let files = [
        (HBA_CONF, HBA.to_owned()),
        (DEFAULTS_CONF, DEFAULTS.to_owned()),
        (USER_CONF, user_conf(&BTreeMap::new())),
        (MANAGED_CONF, managed_conf(&name, primary.port, None)),
    ];
    for (file, text) in files {
        write_owned(inner, &pgdata.join(file), text.as_bytes()).await?;
    }
    let conf = pgdata.join("postgresql.conf");
    let mut text = tokio::fs::read_to_string(&conf)
        .await
        .map_err(PgError::file("read", &conf))?;
    text.push_str(&includes());
    write_owned(inner, &conf, text.as_bytes()).await?;
    pg.start(&pgdata, &entry.paths.log(primary.ordinal)).await?;

    let client = connect_admin(primary.port, &entry.secrets.superuser).await?;
    let s = &entry.secrets;
    // One statement per call: CREATE DATABASE refuses to run in the implicit
    // transaction of a multi-statement query.
    for statement in [
        format!(
            "CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN PASSWORD {}",
            sql_literal(&s.replication)
        ),
        format!(
            "CREATE ROLE app WITH LOGIN PASSWORD {}",
            sql_literal(&s.app)
        ),
        "CREATE DATABASE app OWNER app".to_owned(),
    ] {
        client
            .batch_execute(&statement)
            .await
            .map_err(PgError::sql(primary.port))?;
    }
    entry.update_record(|r| r.bootstrapped = true).await?;
    Ok(())
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
