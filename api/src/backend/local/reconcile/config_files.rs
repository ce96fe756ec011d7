//! The configuration files of an instance as pgplane writes them:
//! `postgresql.conf`'s include lines, pgplane's defaults, the database's
//! parameters (`pgplane.user.conf`), what pgplane manages per instance
//! (`pgplane.managed.conf`) and `pg_hba.conf`. Pure text: which file is
//! written when, and what the servers do with it, is the reconciler's.

use std::collections::BTreeMap;

use super::super::postgres::REPLICATION_USER;
use super::super::HOST;

pub const DEFAULTS_CONF: &str = "pgplane.defaults.conf";
pub const USER_CONF: &str = "pgplane.user.conf";
pub const MANAGED_CONF: &str = "pgplane.managed.conf";
pub const HBA_CONF: &str = "pg_hba.conf";

pub const HBA: &str = "# Managed by pgplane: password logins over loopback only.\n\
host    all          all                127.0.0.1/32    scram-sha-256\n\
host    replication  streaming_replica  127.0.0.1/32    scram-sha-256\n";

/// Small memory defaults, so a laptop runs many instances, and standbys
/// that ask a lost primary again every second (PostgreSQL waits 5 s), as
/// pgplane restarts one within about that; parameters of the database
/// override them.
pub const DEFAULTS: &str = "# Managed by pgplane: defaults a database's parameters may override.\n\
shared_buffers = '16MB'\n\
max_connections = 50\n\
effective_cache_size = '64MB'\n\
maintenance_work_mem = '16MB'\n\
max_wal_size = '256MB'\n\
min_wal_size = '32MB'\n\
max_worker_processes = 4\n\
max_parallel_workers = 2\n\
max_parallel_workers_per_gather = 1\n\
wal_retrieve_retry_interval = '1s'\n";

/// Appended to the `postgresql.conf` initdb writes. Later lines win, so
/// the database's parameters override the defaults and nothing overrides
/// what pgplane manages; only the last file must exist.
pub fn includes() -> String {
    format!(
        "\n# pgplane: defaults, then the database's parameters, then what pgplane manages.\n\
         include_if_exists '{DEFAULTS_CONF}'\ninclude_if_exists '{USER_CONF}'\ninclude '{MANAGED_CONF}'\n"
    )
}

/// The database's parameters, one line each, in name order (so that the
/// same parameters always give the same file, and the file can be
/// compared with what it should hold).
pub fn user_conf(params: &BTreeMap<String, String>) -> String {
    let mut text = String::from("# Managed by pgplane: the database's parameters.\n");
    for (k, v) in params {
        text.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    text
}

/// The primary a standby streams from.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    pub port: u16,
    /// The standby's replication slot on the primary.
    pub slot: &'a str,
    /// The password of the replication role.
    pub password: &'a str,
}

/// What pgplane itself manages per instance; a standby also names its
/// primary.
pub fn managed_conf(name: &str, port: u16, upstream: Option<Upstream>) -> String {
    let mut text = format!(
        "# Managed by pgplane: do not edit.\n\
         port = {port}\n\
         listen_addresses = '{HOST}'\n\
         unix_socket_directories = ''\n\
         wal_level = replica\n\
         max_wal_senders = 12\n\
         max_replication_slots = 12\n\
         hot_standby = on\n\
         wal_log_hints = on\n\
         cluster_name = {}\n",
        conf_quote(name)
    );
    if let Some(p) = upstream {
        let conninfo = format!(
            "host={HOST} port={} user={REPLICATION_USER} password={} application_name={name}",
            p.port, p.password
        );
        text.push_str(&format!(
            "primary_conninfo = {}\nprimary_slot_name = {}\n",
            conf_quote(&conninfo),
            conf_quote(p.slot)
        ));
    }
    text
}

/// Quotes a value for postgresql.conf.
pub fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_quoted_for_postgresql_conf() {
        let table = [
            ("8MB", "'8MB'"),
            ("it's", "'it''s'"),
            (r"a\b", r"'a\\b'"),
            ("", "''"),
            ("$user, public", "'$user, public'"),
        ];
        for (value, want) in table {
            assert_eq!(conf_quote(value), want, "{value}");
        }
    }

    #[test]
    fn the_parameters_file_lists_them_in_name_order() {
        let header = "# Managed by pgplane: the database's parameters.\n";
        let table = [
            (params(&[]), String::new()),
            (
                params(&[("work_mem", "8MB"), ("max_connections", "60")]),
                "max_connections = '60'\nwork_mem = '8MB'\n".to_owned(),
            ),
            (
                params(&[("search_path", "'$user', public")]),
                "search_path = '''$user'', public'\n".to_owned(),
            ),
        ];
        for (params, lines) in table {
            assert_eq!(user_conf(&params), format!("{header}{lines}"), "{params:?}");
        }
    }

    #[test]
    fn a_standby_names_its_primary_and_slot_and_a_primary_does_not() {
        let primary = managed_conf("orders-1", 5433, None);
        assert!(primary.contains("port = 5433\n"), "{primary}");
        assert!(primary.contains("cluster_name = 'orders-1'\n"), "{primary}");
        assert!(!primary.contains("primary_conninfo"), "{primary}");

        let standby = managed_conf(
            "orders-2",
            5434,
            Some(Upstream {
                port: 5433,
                slot: "pgplane_instance_2",
                password: "secret",
            }),
        );
        assert!(standby.contains("port = 5434\n"), "{standby}");
        assert!(
            standby.contains(
                "primary_conninfo = 'host=127.0.0.1 port=5433 user=streaming_replica password=secret application_name=orders-2'\n"
            ),
            "{standby}"
        );
        assert!(
            standby.ends_with("primary_slot_name = 'pgplane_instance_2'\n"),
            "{standby}"
        );
    }

    #[test]
    fn managed_settings_come_last_so_nothing_overrides_them() {
        let text = includes();
        let at = |file: &str| {
            text.find(file)
                .unwrap_or_else(|| panic!("{file} in {text}"))
        };
        assert!(at(DEFAULTS_CONF) < at(USER_CONF));
        assert!(at(USER_CONF) < at(MANAGED_CONF));
        assert!(
            text.contains(&format!("include '{MANAGED_CONF}'")),
            "{text}"
        );
    }
}
