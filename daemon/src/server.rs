//! `rkmd serve`: the gRPC services on a Unix socket (mode 0600 unless
//! `listen.socket_mode` says otherwise, any `:authority`) and
//! optionally a TCP port with TLS 1.3, both behind the access layer, until
//! SIGTERM or SIGINT.

use rkm_proto::audit_entry::action;
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use rkm_proto::v1::access_service_server::AccessServiceServer;
use rkm_proto::v1::audit_service_server::AuditServiceServer;
use rkm_proto::v1::custodian_service_server::CustodianServiceServer;
use rkm_proto::v1::key_service_server::KeyServiceServer;
use rkm_proto::v1::recovery_service_server::RecoveryServiceServer;
use rkm_proto::v1::system_service_server::SystemServiceServer;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::transport::Server;

use crate::access::custodian_auth::CustodianAuthenticator;
use crate::access::guard::Guard;
use crate::access::layer::{AccessControl, AccessLayer};
use crate::access::peer::LocalConnection;
use crate::access::tls::{self, TlsServer};
use crate::api::access::AccessApi;
use crate::api::audit::AuditApi;
use crate::api::custodian::CustodianApi;
use crate::api::key::KeyApi;
use crate::api::recovery::RecoveryApi;
use crate::api::system::SystemApi;
use crate::audit::{AuditLog, Event};
use crate::ceremony::Services;
use crate::ceremony::recovery::RecoveryRuntime;
use crate::config::{ConfigError, Settings, TlsSettings};
use crate::error::DaemonError;
use crate::hsm::HsmHealth;
use crate::socket::authority::AnyAuthority;
use crate::socket::{bind_unix_socket, remove_socket};
use crate::startup;

/// Serves until a shutdown signal; returns after the HSM is finalized.
///
/// # Errors
/// Start-up fails (configuration, store, HSM, socket) or the server fails.
pub async fn serve(settings: Settings) -> Result<(), DaemonError> {
    let tls = match (&settings.listen.tcp, &settings.tls) {
        (
            Some(_),
            TlsSettings {
                certificate: Some(certificate),
                private_key: Some(private_key),
                client_ca: Some(client_ca),
            },
        ) => Some(Arc::new(TlsServer::load(
            certificate,
            private_key,
            client_ca,
        )?)),
        _ => None,
    };
    let roles = settings.role_map().map_err(ConfigError::from)?;
    let (store, hsm) = startup::open(&settings).await?;
    let audit_key = startup::bound_audit_key(&settings, &store, &hsm).await?;
    let (audit, verification) = AuditLog::open(
        store.clone(),
        hsm.clone(),
        audit_key,
        &settings.audit_config(),
    )
    .await?;
    tracing::info!(
        entries = verification.frontier.size(),
        checkpoints = verification.stored_checkpoints,
        token_checkpoint = ?verification.token_checkpoint_size,
        "audit store verified against the token's checkpoint"
    );
    // A crash while the token wrote a checkpoint object can leave half of it.
    let half_made = hsm.remove_half_made_objects().await?;
    if half_made > 0 {
        tracing::warn!(
            objects = half_made,
            "removed half-made data objects that an earlier crash left in the token"
        );
    }
    audit
        .record(
            Event::ok("rkmd", action::DAEMON_START)
                .detail("half_made_objects_removed", half_made.to_string())
                .detail("version", env!("CARGO_PKG_VERSION"))
                .detail("token_label", hsm.description().label.clone())
                .detail("hsm_workers", hsm.worker_count().to_string()),
        )
        .await?;
    audit.checkpoint().await?;
    let system = SystemApi {
        hsm: hsm.clone(),
        store: store.clone(),
        audit_key,
        audit_origin: settings.audit.origin.clone(),
        started_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
    };
    let holding_key = hsm.holding_key().await?;
    let services = Services {
        hsm: hsm.clone(),
        store: store.clone(),
        audit: audit.clone(),
        audit_key,
        recovery: Some(Arc::new(RecoveryRuntime::new(
            holding_key,
            settings.state_dir.join("artefacts"),
        ))),
        attestation_window_days: settings.keys.attestation_window_days,
        two_person_rule: settings.recovery.two_person_rule,
        max_targets: settings.recovery.max_targets,
    };
    services
        .fail_interrupted_key_generations()
        .await
        .map_err(|e| DaemonError::Ceremony(Box::new(e)))?;
    services
        .resume_signing()
        .await
        .map_err(|e| DaemonError::Ceremony(Box::new(e)))?;
    let custodians = Arc::new(CustodianAuthenticator::new(
        store.clone(),
        Duration::from_secs(settings.access.challenge_seconds),
        settings.access.custodian_clock_skew_seconds,
    ));
    let guard = Guard::new(audit.clone(), settings.access.guard());
    let access = AccessLayer::new(Arc::new(AccessControl {
        roles,
        guard: guard.clone(),
        custodians: custodians.clone(),
        hsm: hsm.clone(),
    }));
    hsm.supervise(audit_key);
    let routes = routes(
        hsm.watch_health(),
        system,
        AuditApi { log: audit.clone() },
        AccessApi { custodians },
        services.clone(),
    )
    .await;

    let socket_path = settings.socket_path();
    let unix = bind_unix_socket(
        &socket_path,
        settings.listen.socket_mode,
        settings.listen.socket_group.as_ref(),
    )?;
    let (stop_sender, stop) = watch::channel(false);
    let (stop_checkpoints, checkpoints_stop) = watch::channel(false);
    let checkpointer = audit.spawn_checkpointer(
        settings.audit_config().checkpoint_interval,
        checkpoints_stop.clone(),
    );
    let sweeper = spawn_expiry_sweeper(services.clone(), guard.clone(), checkpoints_stop);
    let mut servers = tokio::task::JoinSet::new();
    let local = UnixListenerStream::new(unix)
        .map(|accepted| accepted.map(|stream| AnyAuthority::new(LocalConnection::new(stream))));
    servers.spawn(
        Server::builder()
            .layer(access.clone())
            .add_routes(routes.clone())
            .serve_with_incoming_shutdown(local, stopped(stop.clone())),
    );
    if let (Some(addr), Some(tls)) = (settings.listen.tcp, tls) {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen {
                what: addr.to_string(),
                source,
            })?;
        let bound = tcp.local_addr().unwrap_or(addr);
        servers.spawn(
            Server::builder()
                .layer(access)
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tls::incoming(tcp, tls, guard.clone()),
                    stopped(stop.clone()),
                ),
        );
        tracing::info!(addr = %bound, "listening on TCP with TLS 1.3");
    }
    tracing::info!(
        socket = %socket_path.display(),
        token = %hsm.description().label,
        workers = hsm.worker_count(),
        "rkmd serving"
    );

    let signal = shutdown_signal();
    let mut result = Ok(());
    tokio::select! {
        name = signal => tracing::info!(signal = name, "shutting down"),
        Some(ended) = servers.join_next() => {
            result = ended.map_err(|_| DaemonError::Listen { what: "server task".into(), source: std::io::Error::other("panicked") })
                .and_then(|served| served.map_err(DaemonError::from));
        }
    }
    services.stop_artefact_collectors();
    let _ = stop_sender.send(true);
    while let Some(ended) = servers.join_next().await {
        if let Ok(Err(error)) = ended {
            tracing::warn!(%error, "server ended with an error during shutdown");
        }
    }
    remove_socket(&socket_path);
    if let Err(error) = audit.record(Event::ok("rkmd", action::DAEMON_STOP)).await {
        tracing::error!(%error, "could not record the shutdown in the audit log");
    }
    let _ = stop_checkpoints.send(true);
    if sweeper.await.is_err() {
        tracing::error!("the expiry sweeper failed");
    }
    guard.flush_bursts(true).await;
    if checkpointer.await.is_err() {
        tracing::error!("the checkpointer task failed");
    }
    drop(audit);
    drop(store);
    // The last handle finalizes PKCS#11 when dropped; do it off the executor.
    tokio::task::spawn_blocking(move || drop(hsm)).await.ok();
    tracing::info!("rkmd stopped; HSM sessions closed and PKCS#11 finalized");
    result
}

/// A generated service with the message limits of `rkm_proto::access::limits`:
/// requests up to its largest method's read limit (the access layer checks
/// each method's own first, and audits), responses up to
/// `MAX_RESPONSE_MESSAGE`.
macro_rules! bounded {
    ($server:expr) => {{
        let server = $server;
        let name = service_name(&server);
        server
            .max_decoding_message_size(rkm_proto::access::limits::service_max_message(name))
            .max_encoding_message_size(rkm_proto::access::limits::MAX_RESPONSE_MESSAGE)
    }};
}

fn service_name<S: tonic::server::NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Keeps `grpc.health.v1` in step with the HSM: every service (and the
/// server as a whole, "") is NOT_SERVING while the HSM is failing, since
/// none can change state then.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    mut hsm_health: watch::Receiver<HsmHealth>,
) {
    const SERVICES: [&str; 6] = [
        "",
        <SystemServiceServer<SystemApi> as tonic::server::NamedService>::NAME,
        <AuditServiceServer<AuditApi> as tonic::server::NamedService>::NAME,
        <CustodianServiceServer<CustodianApi> as tonic::server::NamedService>::NAME,
        <KeyServiceServer<KeyApi> as tonic::server::NamedService>::NAME,
        <RecoveryServiceServer<RecoveryApi> as tonic::server::NamedService>::NAME,
    ];
    async fn set_all(reporter: &tonic_health::server::HealthReporter, health: &HsmHealth) {
        let status = match health {
            HsmHealth::Serving => tonic_health::ServingStatus::Serving,
            HsmHealth::Failing(_) => tonic_health::ServingStatus::NotServing,
        };
        for service in SERVICES {
            reporter.set_service_status(service, status).await;
        }
    }
    let now = hsm_health.borrow_and_update().clone();
    set_all(&reporter, &now).await;
    tokio::spawn(async move {
        while hsm_health.changed().await.is_ok() {
            let now = hsm_health.borrow_and_update().clone();
            set_all(&reporter, &now).await;
        }
    });
}

async fn routes(
    hsm_health: watch::Receiver<HsmHealth>,
    system: SystemApi,
    audit: AuditApi,
    access: AccessApi,
    services: Services,
) -> Routes {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    report_health(health_reporter, hsm_health).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rkm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    // Older grpcurl and grpcio-reflection's client speak only v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rkm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    let mut routes = Routes::builder();
    routes
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(bounded!(AccessServiceServer::new(access)))
        .add_service(bounded!(SystemServiceServer::new(system)))
        .add_service(bounded!(AuditServiceServer::new(audit)))
        .add_service(bounded!(CustodianServiceServer::new(CustodianApi {
            services: services.clone(),
        })))
        .add_service(bounded!(KeyServiceServer::new(KeyApi {
            services: services.clone(),
        })))
        .add_service(bounded!(RecoveryServiceServer::new(RecoveryApi {
            services
        })));
    routes.routes()
}

/// Expires ceremonies whose time is up, once a second, so held shares and
/// envelopes do not outlive their window even when nobody looks; records
/// the bursts of refusals whose window closed; and rewrites the space
/// reserve once there is room again.
fn spawn_expiry_sweeper(
    services: Services,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            services.expire_due().await;
            services.expire_key_generations().await;
            guard.flush_bursts(false).await;
            // Space freed since the reserve was released: take it back.
            let space = services.store.space();
            let _ = tokio::task::spawn_blocking(move || space.ensure_reserve()).await;
        }
    })
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop rkmd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
