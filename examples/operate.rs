//! Operating harden in production: settings from a file, reloaded when the file changes, and
//! an admin endpoint on a listener of its own.
//!
//! ```text
//! ADMIN_TOKEN=s3cret cargo run --example operate -- [settings.toml]
//! ```
//!
//! - The service listens on 127.0.0.1:8080 (`GET /pay`, behind the `payments` breaker, and the
//!   health probes); the admin endpoint on 127.0.0.1:9091 only, a port the service never exposes.
//! - The settings file (default `examples/settings/service.toml`) is watched with `notify`: on
//!   each change it is read again and every named breaker is retuned in place (state and calls
//!   in flight kept; the window keeps its counts unless its length changed). An invalid file is
//!   refused with one log line naming the setting, and the last good settings stay.
//!
//! ```text
//! curl -H "Authorization: Bearer s3cret" localhost:9091/breakers
//! curl -X POST -H "Authorization: Bearer s3cret" localhost:9091/breakers/payments/force_open
//! curl localhost:8080/pay        # 503 while forced open
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use figment::providers::{Format, Toml};
use figment::Figment;
use harden::admin::{Admin, BreakerRegistry};
use harden::http::ErrorResponseLayer;
use harden::settings::ServiceSettings;
use harden::BoxError;
use notify::{RecursiveMode, Watcher};

/// Reads and checks the file: the builders' own validation, naming the full path.
fn load(path: &Path) -> Result<ServiceSettings, BoxError> {
    let settings: ServiceSettings = Figment::new().merge(Toml::file_exact(path)).extract()?;
    settings.validate()?;
    Ok(settings)
}

/// Applies `settings` to the running breakers; a breaker new to the file is built and listed.
fn apply(settings: &ServiceSettings, registry: &BreakerRegistry) -> Result<(), BoxError> {
    for (name, breaker_settings) in &settings.breakers {
        match registry.get(name) {
            Some(breaker) => breaker
                .retune(breaker_settings)
                .map_err(|e| e.within(name.clone()).within("breakers"))?,
            None => {
                registry.register(&breaker_settings.build(name)?);
            }
        }
    }
    Ok(())
}

/// Watches `path` and applies each valid version; an invalid one is logged and skipped.
fn watch(path: PathBuf, registry: BreakerRegistry) -> Result<notify::RecommendedWatcher, BoxError> {
    use notify::event::{EventKind, ModifyKind};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Writes and replacements of our file only: reading it (an access) is no change.
        let changed = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
        );
        if changed && event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            let _ = tx.send(());
        }
    })?;
    // Watch the folder: editors often replace the file rather than write it in place.
    let folder = path.parent().unwrap_or(Path::new(".")).to_owned();
    watcher.watch(&folder, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Let a burst of events (write, rename, chmod) settle into one reload.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            match load(&path).and_then(|s| apply(&s, &registry)) {
                Ok(()) => tracing::info!(path = %path.display(), "settings reloaded"),
                Err(err) => tracing::error!(
                    path = %path.display(),
                    %err,
                    "settings refused; keeping the last good settings"
                ),
            }
        }
    });
    Ok(watcher)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt().with_target(false).init();
    let path: PathBuf = std::env::args()
        .nth(1)
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/settings/service.toml"
            )
            .into()
        })
        .into();
    let settings = load(&path).map_err(|e| format!("{}: {e}", path.display()))?;

    let registry = BreakerRegistry::new();
    for breaker in settings.breakers()?.values() {
        registry.register(breaker);
    }
    let payments = match registry.get("payments") {
        Some(breaker) => breaker,
        None => {
            let breaker = harden::circuit_breaker::CircuitBreaker::builder()
                .name("payments")
                .build()?;
            registry.register(&breaker);
            breaker
        }
    };
    let _watcher = watch(path, registry.clone())?;

    let token = std::env::var("ADMIN_TOKEN")
        .map_err(|_| "set ADMIN_TOKEN: the admin endpoint serves no one without it")?;
    let admin = Admin::builder()
        .registry(&registry)
        .bearer_token(token)
        .build()?;
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:9091").await?;
    tracing::info!("admin endpoint on http://127.0.0.1:9091/breakers");
    tokio::spawn(async move { axum::serve(admin_listener, admin.router::<()>()).await });

    let shutdown = settings.server.shutdown.build()?;
    let health = settings
        .server
        .health
        .builder()
        .breaker(&payments)
        .shutdown(&shutdown.handle())
        .build()?;
    let app = Router::new()
        .route(
            "/pay",
            get(|| async { "paid" }).layer(
                tower::ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(payments.layer()),
            ),
        )
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    tracing::info!("service on http://127.0.0.1:8080/pay");
    shutdown.serve(listener, app).await?;
    Ok(())
}
