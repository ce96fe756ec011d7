//! Which PostgreSQL parameters a database's `parameters` may not set, and why.
//!
//! This module owns one decision, [`refusal`]: given a parameter name, is it
//! refused, and for which reason. Everything not refused here is ordinary
//! tuning and is left to PostgreSQL to judge (the local backend asks
//! `postgres -C`; a breaking value is undone elsewhere). The caller turns a
//! refusal into a per-field 422 whose message is [`Refusal::reason`].
//!
//! What is refused, group by group (the README section "Parameters you cannot
//! set" says the same in prose):
//! - what pgplane (or CloudNativePG for the kubernetes backend) sets itself:
//!   listening, authentication, replication, WAL archiving, recovery, logging;
//! - what loads code into the server, or runs a command or code on it;
//! - what names a file or directory on the server;
//! - what can corrupt data, bypass checks, or lock pgplane out;
//! - what PostgreSQL does not let a configuration file set at all.
//!
//! The decision is by name only: refused names are refused whatever the value.
//! Names compare case-insensitively (ASCII), as PostgreSQL compares them.
//! Names with a dot are extension settings: they are allowed, because they do
//! nothing unless their extension is loaded and loading one is refused here,
//! except the few listed that run code as soon as a trusted language or a
//! module is used, and those CloudNativePG manages.
//!
//! Pure and std-only: no I/O, no crate imports.

use std::cmp::Ordering;

/// Why a parameter cannot be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// pgplane (or CloudNativePG) sets it: listening, authentication,
    /// replication, WAL archiving, recovery, logging.
    Managed,
    /// It loads a shared library or chooses where libraries and extensions
    /// are loaded from.
    LoadsCode,
    /// It runs a shell command or code in a procedural language.
    RunsCommand,
    /// It names a file or directory on the server.
    NamesPath,
    /// It can corrupt or lose data, bypass permission or consistency checks,
    /// or lock pgplane out of the database.
    Unsafe,
    /// PostgreSQL itself does not let a configuration file set it: a value
    /// fixed when PostgreSQL was built or the cluster was created, or a
    /// per-session setting. Refused so the answer is a 422, not a server that
    /// will not start.
    NotSettable,
}

impl Refusal {
    /// Every reason, in the order the README lists them.
    pub const ALL: [Refusal; 6] = [
        Refusal::Managed,
        Refusal::LoadsCode,
        Refusal::RunsCommand,
        Refusal::NamesPath,
        Refusal::Unsafe,
        Refusal::NotSettable,
    ];

    /// The 422 field message: it follows the field name
    /// (`parameters.port` "is managed by pgplane and cannot be set").
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Managed => "is managed by pgplane and cannot be set",
            Refusal::LoadsCode => "loads code into the server and cannot be set",
            Refusal::RunsCommand => "runs commands or code on the server and cannot be set",
            Refusal::NamesPath => "names a file or directory on the server and cannot be set",
            Refusal::Unsafe => {
                "can corrupt data, bypass checks or lock pgplane out of the database, and cannot be set"
            }
            Refusal::NotSettable => {
                "is fixed by PostgreSQL (read-only or per session) and cannot be set in the server configuration"
            }
        }
    }

    /// The refused names of this reason, sorted, lowercase.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Refusal::Managed => MANAGED,
            Refusal::LoadsCode => LOADS_CODE,
            Refusal::RunsCommand => RUNS_COMMAND,
            Refusal::NamesPath => NAMES_PATH,
            Refusal::Unsafe => UNSAFE,
            Refusal::NotSettable => NOT_SETTABLE,
        }
    }
}

/// Whether `name` may be set, and if not, why. The one decision of this
/// module; names are compared ASCII case-insensitively.
pub fn refusal(name: &str) -> Option<Refusal> {
    Refusal::ALL.into_iter().find(|r| {
        r.names()
            .binary_search_by(|probe| folded_cmp(probe, name))
            .is_ok()
    })
}

/// Every refused name with its reason, group by group.
pub fn refused() -> impl Iterator<Item = (&'static str, Refusal)> {
    Refusal::ALL
        .into_iter()
        .flat_map(|r| r.names().iter().map(move |n| (*n, r)))
}

/// Compares as PostgreSQL's `guc_name_compare` does: ASCII letters folded.
fn folded_cmp(a: &str, b: &str) -> Ordering {
    a.bytes()
        .map(|c| c.to_ascii_lowercase())
        .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

// Each table is sorted (byte order) and lowercase; the tests check it. A name
// marked with a version exists only in those PostgreSQL versions: it is listed
// so that every version pgplane may run gets the same answer.

/// Set by pgplane or CloudNativePG: where the server listens and how it is
/// announced; how clients authenticate (pgplane writes pg_hba.conf and its
/// own passwords: `password_encryption = md5` would make new passwords
/// unusable under scram-sha-256); streaming replication, standby slots,
/// WAL level and hints (pg_rewind needs them); archiving and recovery
/// targets; crash restart (the backend restarts the server); where logs go
/// (pgplane and CloudNativePG read them); whether ALTER SYSTEM is allowed;
/// temporary tablespaces (CloudNativePG owns them, so the same spec stays
/// valid on both backends) and the pg_failover_slots settings CloudNativePG
/// writes.
const MANAGED: &[&str] = &[
    "allow_alter_system", // PostgreSQL 17+
    "archive_mode",
    "bonjour",
    "bonjour_name",
    "cluster_name",
    "db_user_namespace", // PostgreSQL 16 and older
    "event_source",
    "gss_accept_delegation", // PostgreSQL 16+
    "hot_standby",
    "krb_caseins_users",
    "listen_addresses",
    "log_destination",
    "log_file_mode",
    "log_rotation_age",
    "log_rotation_size",
    "log_truncate_on_rotation",
    "logging_collector",
    "max_replication_slots",
    "max_wal_senders",
    "password_encryption",
    "pg_failover_slots.primary_dsn",
    "pg_failover_slots.standby_slot_names",
    "port",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_min_apply_delay",
    "recovery_target",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_timeline",
    "recovery_target_xid",
    "restart_after_crash",
    "ssl",
    "ssl_passphrase_command_supports_reload",
    "ssl_prefer_server_ciphers",
    "synchronized_standby_slots", // PostgreSQL 17+
    "synchronous_standby_names",
    "syslog_facility",
    "syslog_ident",
    "syslog_sequence_numbers",
    "syslog_split_messages",
    "temp_tablespaces",
    "unix_socket_group",
    "unix_socket_permissions",
    "wal_level",
    "wal_log_hints",
];

/// Load a shared library into the server, or decide where libraries and
/// extensions are loaded from: whoever sets them runs native code as the
/// PostgreSQL account. `extension_destdir` is a Debian/Ubuntu packaging
/// addition, present in their PostgreSQL 15 servers.
const LOADS_CODE: &[&str] = &[
    "archive_library",
    "dynamic_library_path",
    "extension_control_path", // PostgreSQL 18+
    "extension_destdir",
    "jit_provider",
    "local_preload_libraries",
    "oauth_validator_libraries", // PostgreSQL 18+
    "session_preload_libraries",
    "shared_preload_libraries",
];

/// Run a shell command, or code in a procedural language before any
/// function is called: archiving, restore and recovery commands, the TLS key
/// passphrase command, PL/Perl and PL/Tcl start-up code (PL/Perl and PL/Tcl
/// are trusted: a database owner can create them), PL/v8's start-up
/// function, and the basebackup_to_shell module's command.
const RUNS_COMMAND: &[&str] = &[
    "archive_cleanup_command",
    "archive_command",
    "basebackup_to_shell.command",
    "plperl.on_init",
    "plperl.on_plperl_init",
    "plperl.on_plperlu_init",
    "pltcl.start_proc",
    "pltclu.start_proc",
    "plv8.start_proc",
    "recovery_end_command",
    "restore_command",
    "ssl_passphrase_command",
];

/// Name a file or directory on the server: the data directory and the
/// other configuration files, configuration-file inclusion (`include`,
/// `include_dir` and `include_if_exists` are directives, not parameters, but
/// a `name = value` line spells them), pid file, log files, sockets, TLS and
/// Kerberos keys and certificates, trigger files, statistics files and the
/// basic_archive module's directory.
const NAMES_PATH: &[&str] = &[
    "basic_archive.archive_directory",
    "config_file",
    "data_directory",
    "external_pid_file",
    "hba_file",
    "ident_file",
    "include",
    "include_dir",
    "include_if_exists",
    "krb_server_keyfile",
    "log_directory",
    "log_filename",
    "promote_trigger_file", // PostgreSQL 15 and older
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_crl_dir",
    "ssl_crl_file",
    "ssl_dh_params_file",
    "ssl_key_file",
    "stats_temp_directory", // PostgreSQL 14 and older
    "unix_socket_directories",
];

/// Can corrupt or silently lose data (`fsync`, `full_page_writes`,
/// `data_sync_retry`, `zero_damaged_pages`, the `ignore_*` checks), let
/// anyone modify system catalogs or large objects, disable triggers and
/// foreign keys for every session (`session_replication_role`), make every
/// session read-only or every error fatal, stall every connection, remove
/// the connection slots pgplane relies on when the server is full, or fill
/// the data directory with debugging files.
const UNSAFE: &[&str] = &[
    "allow_in_place_tablespaces",
    "allow_system_table_mods",
    "data_sync_retry",
    "default_transaction_read_only",
    "exit_on_error",
    "fsync",
    "full_page_writes",
    "ignore_checksum_failure",
    "ignore_invalid_pages",
    "ignore_system_indexes",
    "jit_dump_bitcode",
    "lo_compat_privileges",
    "post_auth_delay",
    "pre_auth_delay",
    "session_replication_role",
    "superuser_reserved_connections",
    "zero_damaged_pages",
];

/// PostgreSQL refuses these in a configuration file, or ignores them there:
/// values fixed when PostgreSQL was built or the cluster was initialized
/// (a server whose configuration sets one does not start), and per-session
/// settings (`role`, `session_authorization`, `transaction_*`, `seed`).
const NOT_SETTABLE: &[&str] = &[
    "block_size",
    "data_checksums",
    "data_directory_mode",
    "debug_assertions",
    "huge_pages_status", // PostgreSQL 17+
    "in_hot_standby",
    "integer_datetimes",
    "is_superuser",
    "lc_collate", // PostgreSQL 15 and older
    "lc_ctype",   // PostgreSQL 15 and older
    "max_function_args",
    "max_identifier_length",
    "max_index_keys",
    "num_os_semaphores", // PostgreSQL 18+
    "role",
    "seed",
    "segment_size",
    "server_encoding",
    "server_version",
    "server_version_num",
    "session_authorization",
    "shared_memory_size",
    "shared_memory_size_in_huge_pages",
    "ssl_library",
    "transaction_deferrable",
    "transaction_isolation",
    "transaction_read_only",
    "wal_block_size",
    "wal_segment_size",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn decides_by_name() {
        let cases: &[(&str, Option<Refusal>)] = &[
            // The security review's five.
            ("session_preload_libraries", Some(Refusal::LoadsCode)),
            ("local_preload_libraries", Some(Refusal::LoadsCode)),
            ("default_transaction_read_only", Some(Refusal::Unsafe)),
            ("ssl_passphrase_command", Some(Refusal::RunsCommand)),
            ("dynamic_library_path", Some(Refusal::LoadsCode)),
            // A sample of each class.
            ("port", Some(Refusal::Managed)),
            ("wal_level", Some(Refusal::Managed)),
            ("password_encryption", Some(Refusal::Managed)),
            ("logging_collector", Some(Refusal::Managed)),
            ("temp_tablespaces", Some(Refusal::Managed)),
            ("pg_failover_slots.primary_dsn", Some(Refusal::Managed)),
            ("shared_preload_libraries", Some(Refusal::LoadsCode)),
            ("jit_provider", Some(Refusal::LoadsCode)),
            ("archive_library", Some(Refusal::LoadsCode)),
            ("archive_command", Some(Refusal::RunsCommand)),
            ("restore_command", Some(Refusal::RunsCommand)),
            ("plperl.on_init", Some(Refusal::RunsCommand)),
            ("data_directory", Some(Refusal::NamesPath)),
            ("include_dir", Some(Refusal::NamesPath)),
            ("ssl_key_file", Some(Refusal::NamesPath)),
            ("krb_server_keyfile", Some(Refusal::NamesPath)),
            ("log_filename", Some(Refusal::NamesPath)),
            ("allow_system_table_mods", Some(Refusal::Unsafe)),
            ("zero_damaged_pages", Some(Refusal::Unsafe)),
            ("fsync", Some(Refusal::Unsafe)),
            ("session_replication_role", Some(Refusal::Unsafe)),
            ("block_size", Some(Refusal::NotSettable)),
            ("transaction_read_only", Some(Refusal::NotSettable)),
            ("session_authorization", Some(Refusal::NotSettable)),
            // Ordinary tuning stays allowed.
            ("work_mem", None),
            ("shared_buffers", None),
            ("max_connections", None),
            ("log_min_duration_statement", None),
            ("statement_timeout", None),
            ("search_path", None),
            ("random_page_cost", None),
            ("jit", None),
            ("synchronous_commit", None),
            ("hot_standby_feedback", None),
            ("wal_keep_size", None),
            ("ssl_ciphers", None),
            ("ssl_min_protocol_version", None),
            ("default_tablespace", None),
            ("default_transaction_isolation", None),
            ("shared_memory_type", None),
            ("auto_explain.log_min_duration", None),
            ("pg_stat_statements.max", None),
            ("plperl.use_strict", None),
            // Near misses of refused names.
            ("ssl_", None),
            ("portx", None),
            ("include_", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(refusal(name), *want, "{name}");
        }
    }

    #[test]
    fn names_compare_case_insensitively() {
        assert_eq!(
            refusal("Shared_Preload_Libraries"),
            Some(Refusal::LoadsCode)
        );
        assert_eq!(
            refusal("DEFAULT_TRANSACTION_READ_ONLY"),
            Some(Refusal::Unsafe)
        );
        assert_eq!(refusal("PlPerl.On_Init"), Some(Refusal::RunsCommand));
        assert_eq!(refusal("Include"), Some(Refusal::NamesPath));
        assert_eq!(refusal("Work_Mem"), None);
    }

    #[test]
    fn tables_are_sorted_lowercase_and_without_duplicates() {
        let mut seen = BTreeSet::new();
        for r in Refusal::ALL {
            let names = r.names();
            assert!(!names.is_empty(), "{r:?}");
            for pair in names.windows(2) {
                assert!(pair[0] < pair[1], "{r:?}: {} before {}", pair[0], pair[1]);
            }
            for n in names {
                assert!(
                    n.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b == b'.'),
                    "{n}"
                );
                assert!(seen.insert(*n), "{n} is in two groups");
                assert_eq!(refusal(n), Some(r), "{n}");
            }
        }
        assert_eq!(refused().count(), seen.len());
    }

    #[test]
    fn reasons_are_distinct_sentences_after_a_field_name() {
        let reasons: BTreeSet<_> = Refusal::ALL.iter().map(|r| r.reason()).collect();
        assert_eq!(reasons.len(), Refusal::ALL.len());
        for r in reasons {
            assert!(
                r.ends_with("cannot be set") || r.ends_with("server configuration"),
                "{r}"
            );
            assert!(!r.ends_with('.'), "{r}");
        }
    }

    /// Everything the model refused before this module still is.
    #[test]
    fn refuses_the_former_managed_list() {
        for name in [
            "archive_cleanup_command",
            "archive_command",
            "archive_mode",
            "cluster_name",
            "config_file",
            "data_directory",
            "external_pid_file",
            "hba_file",
            "hot_standby",
            "ident_file",
            "listen_addresses",
            "log_destination",
            "log_directory",
            "logging_collector",
            "max_replication_slots",
            "max_wal_senders",
            "port",
            "primary_conninfo",
            "primary_slot_name",
            "promote_trigger_file",
            "recovery_end_command",
            "recovery_min_apply_delay",
            "recovery_target",
            "recovery_target_action",
            "recovery_target_inclusive",
            "recovery_target_lsn",
            "recovery_target_name",
            "recovery_target_time",
            "recovery_target_timeline",
            "recovery_target_xid",
            "restore_command",
            "shared_preload_libraries",
            "ssl",
            "ssl_ca_file",
            "ssl_cert_file",
            "ssl_key_file",
            "synchronous_standby_names",
            "unix_socket_directories",
            "unix_socket_group",
            "unix_socket_permissions",
            "wal_level",
            "wal_log_hints",
        ] {
            assert!(refusal(name).is_some(), "{name}");
        }
    }

    /// CloudNativePG's webhook refuses these (its documented "Fixed
    /// parameters" and its code's fixed and blocked map): we refuse at least
    /// as much, so a spec we accept is never refused by the operator.
    #[test]
    fn refuses_everything_cloudnativepg_refuses() {
        for name in [
            "allow_alter_system",
            "allow_system_table_mods",
            "archive_cleanup_command",
            "archive_command",
            "archive_mode",
            "bonjour",
            "bonjour_name",
            "cluster_name",
            "config_file",
            "data_directory",
            "data_sync_retry",
            "event_source",
            "external_pid_file",
            "hba_file",
            "hot_standby",
            "ident_file",
            "jit_provider",
            "listen_addresses",
            "log_destination",
            "log_directory",
            "log_file_mode",
            "log_filename",
            "log_rotation_age",
            "log_rotation_size",
            "log_truncate_on_rotation",
            "logging_collector",
            "pg_failover_slots.primary_dsn",
            "pg_failover_slots.standby_slot_names",
            "port",
            "primary_conninfo",
            "primary_slot_name",
            "promote_trigger_file",
            "recovery_end_command",
            "recovery_min_apply_delay",
            "recovery_target",
            "recovery_target_action",
            "recovery_target_inclusive",
            "recovery_target_lsn",
            "recovery_target_name",
            "recovery_target_time",
            "recovery_target_timeline",
            "recovery_target_xid",
            "restart_after_crash",
            "restore_command",
            "shared_preload_libraries",
            "ssl",
            "ssl_ca_file",
            "ssl_cert_file",
            "ssl_crl_file",
            "ssl_dh_params_file",
            "ssl_key_file",
            "ssl_passphrase_command",
            "ssl_passphrase_command_supports_reload",
            "ssl_prefer_server_ciphers",
            "stats_temp_directory",
            "synchronized_standby_slots",
            "synchronous_standby_names",
            "syslog_facility",
            "syslog_ident",
            "syslog_sequence_numbers",
            "syslog_split_messages",
            "temp_tablespaces",
            "unix_socket_directories",
            "unix_socket_group",
            "unix_socket_permissions",
        ] {
            assert!(refusal(name).is_some(), "{name}");
        }
    }
}
