//! A whole service's settings from a file, overridden by the environment, through `figment`.
//!
//! `cargo run --example settings [path/to/settings.{toml,yaml,json}]`
//!
//! Reads `examples/settings/service.toml` (or the file given), then environment variables
//! prefixed `APP_` with `__` between sections, e.g.
//! `APP_BREAKERS__PAYMENTS__RESET_TIMEOUT=30s`. harden has no loader of its own: any serde
//! format works, because every settings struct is plain serde data (feature `serde`).

use std::path::Path;

use figment::providers::{Env, Format, Json, Toml, Yaml};
use figment::Figment;
use harden::settings::ServiceSettings;

fn load(path: &Path) -> Result<ServiceSettings, Box<dyn std::error::Error>> {
    let file = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Figment::new().merge(Yaml::file(path)),
        Some("json") => Figment::new().merge(Json::file(path)),
        _ => Figment::new().merge(Toml::file(path)),
    };
    let settings: ServiceSettings = file.merge(Env::prefixed("APP_").split("__")).extract()?;
    // The builders' own checks, naming the full path of an invalid setting.
    settings.validate()?;
    Ok(settings)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/settings/service.toml"
        )
        .into()
    });
    let settings = match load(Path::new(&path)) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{path}: {err}");
            std::process::exit(2);
        }
    };

    let breakers = settings.breakers()?;
    for (name, breaker) in &breakers {
        let s = breaker.settings();
        println!(
            "breaker {name}: opens at {}% over {} calls, stays open {:?}",
            s.error_threshold_percentage, s.volume_threshold, s.reset_timeout
        );
    }
    if let Some(retry) = settings.retry("payments") {
        println!("retry payments: {} attempts", retry?.max_attempts());
    }
    let client = settings.client.build("upstream")?;
    println!(
        "client: breaker {} resets after {:?}",
        client.breaker().name(),
        client.breaker().settings().reset_timeout
    );
    let shutdown = settings.server.shutdown.build()?;
    let _health = settings
        .server
        .health
        .builder()
        .shutdown(&shutdown.handle())
        .build()?;
    println!(
        "server: drain {:?}, deadline {:?}",
        settings.server.shutdown.drain_delay, settings.server.shutdown.deadline
    );
    // The effective settings, written back as JSON.
    println!("{}", serde_json::to_string_pretty(&settings)?);
    Ok(())
}
