//! `pgplane serve`: builds the application from the settings (backend,
//! users, tokens, metrics) and serves it until SIGINT or SIGTERM. How
//! client connections are accepted, bounded and read is in [`connections`]
//! (the accept loop and the bound), `stream` (each connection's deadlines)
//! and `framing` (where each request head is, and whether it may pass).

pub mod connections;
mod framing;
mod stream;

use std::sync::Arc;

use crate::app::{App, Streams};
use crate::auth::{token::Tokens, users::Generated, Auth, Users};
use crate::backend::kubernetes::{KubeBackend, KubeSettings};
use crate::backend::local::{LocalBackend, PgError};
use crate::backend::Backend;
use crate::config::{BackendKind, LogFormat, SettingError, Settings, StoreKind};
use crate::http::router;
use crate::metrics::Metrics;
use crate::model::Limits;
use crate::records::{Audit, Events, Loki, Pusher};

/// The majors offered on Kubernetes when `PGPLANE_POSTGRES_VERSIONS` is
/// unset: those CloudNativePG 1.30 supports that upstream still maintains.
pub const KUBERNETES_POSTGRES_VERSIONS: &[u32] = &[14, 15, 16, 17, 18];

/// Why start-up stopped: one line naming the setting or resource at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("the {0} backend cannot start")]
    Backend(&'static str, #[source] PgError),
}

/// A setting that is at fault, with the cause below it.
fn setting(var: &'static str, cause: impl std::error::Error) -> StartError {
    StartError::Setting(SettingError {
        var,
        reason: crate::http::problem::chain(&cause),
    })
}

/// A built application, ready to serve.
pub struct Built {
    pub router: axum::Router,
    pub app: Arc<App>,
    pub backend: Arc<dyn Backend>,
    pub events: Arc<Events>,
    /// The bootstrap admin's password, when this start generated it.
    pub generated_admin: Option<Generated>,
}

impl Built {
    /// After the last answer: stops the backend's tasks, then waits until
    /// every service event recorded is on disk (they are written behind).
    pub async fn stop(&self) {
        self.backend.shutdown();
        self.events.flush().await;
    }
}

/// The record stores the settings choose: each kind by its own setting,
/// both pushed to Loki when pushing is on.
fn open_records(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> Result<(Events, Audit), StartError> {
    let loki = match &settings.loki {
        None => None,
        Some(l) => Some((
            Loki::new(l, metrics.clone()).map_err(|e| setting("PGPLANE_LOKI_URL", e))?,
            Pusher::start(l, metrics.clone()).map_err(|e| setting("PGPLANE_LOKI_URL", e))?,
        )),
    };
    let mut events = Events::open(&settings.data_dir, metrics.clone())
        .map_err(|e| setting("PGPLANE_DATA_DIR", e))?;
    let mut audit = match (settings.audit_store, &loki) {
        (StoreKind::Loki, Some((l, _))) => Audit::loki(l.clone(), metrics.clone()),
        _ => Audit::local(&settings.data_dir, metrics.clone())
            .map_err(|e| setting("PGPLANE_DATA_DIR", e))?,
    };
    if let Some((l, pusher)) = loki {
        if settings.event_store == StoreKind::Loki {
            events = events.query_from(l);
        }
        if let Some(pusher) = pusher {
            events = events.push_to(pusher.clone());
            audit = audit.push_to(pusher);
        }
    }
    Ok((events, audit))
}

pub async fn build(settings: &Settings) -> Result<Built, StartError> {
    let metrics = Arc::new(Metrics::new());
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| setting("PGPLANE_DATA_DIR", e))?;
    let (events, audit) = open_records(settings, &metrics)?;
    let events = Arc::new(events);
    let (backend, postgres_versions): (Arc<dyn Backend>, Vec<u32>) = match settings.backend {
        BackendKind::Local => {
            let local = LocalBackend::start(
                &settings.data_dir,
                settings.pg_bindir.as_deref(),
                &settings.pg_user,
                settings.max_instances,
                settings.revision_history,
                metrics.clone(),
                events.clone(),
            )
            .await
            .map_err(|e| match e {
                PgError::Setting(e) => StartError::Setting(e),
                other => StartError::Backend("local", other),
            })?;
            let installed = local.postgres_major();
            let versions = match &settings.postgres_versions {
                None => vec![installed],
                Some(v) if v == &[installed] => v.clone(),
                Some(v) => {
                    return Err(StartError::Setting(SettingError {
                        var: "PGPLANE_POSTGRES_VERSIONS",
                        reason: format!(
                        "the local backend offers only the installed major {installed}, not {v:?}"
                    ),
                    }))
                }
            };
            (Arc::new(local), versions)
        }
        BackendKind::Kubernetes => {
            let kube = KubeBackend::start(
                &KubeSettings {
                    namespace: settings.namespace.clone(),
                    kubeconfig: settings.kubeconfig.clone(),
                    revision_history: settings.revision_history,
                },
                metrics.clone(),
                events.clone(),
            )
            .await?;
            let versions = settings
                .postgres_versions
                .clone()
                .unwrap_or_else(|| KUBERNETES_POSTGRES_VERSIONS.to_vec());
            (Arc::new(kube), versions)
        }
    };
    let secret = Tokens::load_secret(&settings.jwt_secret, &settings.data_dir)
        .map_err(|e| setting("PGPLANE_JWT_SECRET_FILE", e))?;
    let (users, generated_admin) = Users::load(&settings.users, &settings.data_dir)
        .map_err(|e| setting("PGPLANE_USERS_FILE", e))?;
    let app = Arc::new(App {
        backend: backend.clone(),
        auth: Auth::new(users, Tokens::new(&secret, settings.token_ttl)),
        streams: Streams::new(settings.max_streams, metrics.clone()),
        metrics,
        events: events.clone(),
        audit: Arc::new(audit),
        limits: Limits {
            postgres_versions,
            max_storage_bytes: settings.max_storage_bytes,
        },
        namespace: settings.namespace.clone(),
    });
    Ok(Built {
        router: router(app.clone()),
        app,
        backend,
        events,
        generated_admin,
    })
}

pub async fn run(settings: Settings) -> Result<(), StartError> {
    init_logging(settings.log_format);
    // Bound first, so a taken port stops start-up before any database is touched.
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            StartError::Setting(SettingError {
                var: "PGPLANE_LISTEN",
                reason: format!("cannot listen on {}: {e}", settings.listen),
            })
        })?;
    let built = build(&settings).await?;
    if let Some(Generated(password)) = &built.generated_admin {
        // Shown once, on the terminal, never in a log line; only its hash is kept.
        eprintln!(
            "\n  pgplane generated the password of user admin: {}\n  (it is not shown again; its hash is in {})\n",
            password.expose(),
            settings.data_dir.join("admin-password.hash").display()
        );
    }
    let limits = settings.connections;
    tracing::info!(
        listen = %settings.listen,
        data_dir = %settings.data_dir.display(),
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        idle_timeout_s = limits.idle_timeout.as_secs(),
        "pgplane serving"
    );
    let app = built.app.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // Streams never end by themselves: ended now, their connections
        // drain with the others.
        app.streams.stop_all();
    };
    connections::serve(listener, built.router.clone(), limits, shutdown).await;
    built.stop().await;
    match settings.backend {
        BackendKind::Local => {
            tracing::info!("pgplane stopped; the PostgreSQL servers keep running")
        }
        BackendKind::Kubernetes => tracing::info!("pgplane stopped; the Clusters keep running"),
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PGPLANE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}
