//! The admin endpoint on a real listener: authorization, every action reflected in the breaker's
//! state, settings and metrics, and the answers to bad requests.

use std::net::SocketAddr;

use harden::admin::{Access, Admin, BreakerRegistry};
use harden::circuit_breaker::{CircuitBreaker, State};
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

async fn serve(admin: &Admin) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: axum::Router = admin.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn setup() -> (BreakerRegistry, CircuitBreaker, Admin) {
    let registry = BreakerRegistry::new();
    let breaker = CircuitBreaker::builder().name("payments").build().unwrap();
    assert!(registry.register(&breaker));
    let admin = Admin::builder()
        .registry(&registry)
        .bearer_token(TOKEN)
        .build()
        .unwrap();
    (registry, breaker, admin)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[test]
fn mounting_without_an_authorizer_is_a_config_error() {
    let err = Admin::builder().build().unwrap_err();
    assert_eq!(err.field(), "authorizer");
    let err = Admin::builder().bearer_token("").build().unwrap_err();
    assert_eq!(err.field(), "bearer_token");
}

#[tokio::test]
async fn no_token_is_401_and_a_wrong_one_403() {
    let (_registry, breaker, admin) = setup();
    let addr = serve(&admin).await;
    let http = client();
    let url = format!("http://{addr}/breakers/payments/force_open");

    let response = http.post(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = http
        .post(&url)
        .bearer_auth("s3cret-tokem")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http.post(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a prefix is not the token"
    );
    let response = http
        .get(format!("http://{addr}/breakers"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        breaker.state(),
        State::Closed,
        "refused requests change nothing"
    );
}

#[tokio::test]
async fn a_closure_authorizer_decides() {
    let registry = BreakerRegistry::new();
    let admin = Admin::builder()
        .registry(&registry)
        .authorize(|headers| match headers.get("x-role") {
            Some(role) if role == "oncall" => Access::Allow,
            Some(_) => Access::Forbidden,
            None => Access::Unauthenticated,
        })
        .build()
        .unwrap();
    let addr = serve(&admin).await;
    let url = format!("http://{addr}/breakers");
    let http = client();
    let status = |r: reqwest::Response| r.status();
    assert_eq!(
        status(http.get(&url).send().await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    let guest = http
        .get(&url)
        .header("x-role", "guest")
        .send()
        .await
        .unwrap();
    assert_eq!(guest.status(), StatusCode::FORBIDDEN);
    let oncall = http
        .get(&url)
        .header("x-role", "oncall")
        .send()
        .await
        .unwrap();
    assert_eq!(oncall.status(), StatusCode::OK);
}

#[tokio::test]
async fn list_force_open_disable_reset_and_retune() {
    let (_registry, breaker, admin) = setup();
    let addr = serve(&admin).await;
    let http = client();
    let base = format!("http://{addr}/breakers");

    let list: Value = http
        .get(&base)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &list["breakers"][0];
    assert_eq!(entry["name"], "payments");
    assert_eq!(entry["state"], "closed");
    assert_eq!(entry["stats"]["failures"], 0);
    assert_eq!(entry["settings"]["reset_timeout"], "10s");

    for (action, state) in [
        ("force_open", State::ForcedOpen),
        ("disable", State::Disabled),
        ("reset", State::Closed),
    ] {
        let response = http
            .post(format!("{base}/payments/{action}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{action}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["state"], state.as_str());
        assert_eq!(breaker.state(), state, "{action}");
    }

    let response = http
        .patch(format!("{base}/payments/settings"))
        .bearer_auth(TOKEN)
        .body(r#"{"error_threshold_percentage": 20, "reset_timeout": "30s"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["settings"]["reset_timeout"], "30s");
    let settings = breaker.settings();
    assert_eq!(settings.error_threshold_percentage, 20.0);
    assert_eq!(settings.reset_timeout, std::time::Duration::from_secs(30));
    assert_eq!(settings.volume_threshold, 20, "keys not sent are kept");

    let one: Value = http
        .get(format!("{base}/payments"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["settings"]["error_threshold_percentage"], 20.0);

    // A new window length: the window starts from zero, the state is kept.
    let _ = breaker.call(|| Err::<(), _>("boom"));
    breaker.force_open();
    let response = http
        .patch(format!("{base}/payments/settings"))
        .bearer_auth(TOKEN)
        .body(r#"{"rolling_window": "20s", "rolling_window_buckets": 20}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["settings"]["rolling_window"], "20s");
    assert_eq!(body["stats"]["failures"], 0);
    assert_eq!(breaker.settings().rolling_window_buckets, 20);
    assert_eq!(breaker.state(), State::ForcedOpen);
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_breakers_are_404() {
    let (_registry, breaker, admin) = setup();
    let addr = serve(&admin).await;
    let http = client();
    let before = breaker.settings();
    let patch = |body: &'static str| {
        http.patch(format!("http://{addr}/breakers/payments/settings"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    for (body, field) in [
        (r#"{"volume_threshold": "many"}"#, Some("volume_threshold")),
        (r#"{"reset_timeout": "soon"}"#, Some("reset_timeout")),
        (r#"{"reset": "1s"}"#, Some("reset")),
        (
            r#"{"error_threshold_percentage": 150}"#,
            Some("error_threshold_percentage"),
        ),
        (r#"{"rolling_window": "0s"}"#, Some("rolling_window")),
        (r#"{"volume_threshold": 5"#, None),
        (r#"[1, 2]"#, None),
    ] {
        let response = patch(body).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        match field {
            Some(field) => assert_eq!(answer["field"], field, "{body}: {answer}"),
            None => assert!(answer.get("field").is_none(), "{body}: {answer}"),
        }
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        breaker.settings(),
        before,
        "refused changes keep the settings"
    );

    for response in [
        http.get(format!("http://{addr}/breakers/nope"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
        http.post(format!("http://{addr}/breakers/nope/reset"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn names_with_slashes_are_percent_encoded() {
    let registry = BreakerRegistry::new();
    let breaker = CircuitBreaker::builder()
        .name("http/https://api:443")
        .build()
        .unwrap();
    registry.register(&breaker);
    let admin = Admin::builder()
        .registry(&registry)
        .bearer_token(TOKEN)
        .build()
        .unwrap();
    let addr = serve(&admin).await;
    let response = client()
        .post(format!(
            "http://{addr}/breakers/http%2Fhttps:%2F%2Fapi:443/force_open"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(breaker.state(), State::ForcedOpen);
}

#[tokio::test]
async fn the_per_authority_client_registers_its_breakers() {
    let registry = BreakerRegistry::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = harden::reqwest::Client::builder()
        .client(client())
        .registry(&registry)
        .build()
        .unwrap();
    client.get(format!("http://{addr}/")).send().await.unwrap();
    let name = format!("http/http://127.0.0.1:{}", addr.port());
    assert_eq!(registry.names(), std::slice::from_ref(&name));
    let url = reqwest::Url::parse(&format!("http://{addr}/")).unwrap();
    registry.get(&name).unwrap().force_open();
    assert_eq!(client.breaker(&url).unwrap().state(), State::ForcedOpen);
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn every_action_shows_in_the_metrics() {
    use harden::metrics::names;
    let recorder = crate::support::recorder::TestRecorder::new();
    let breaker = metrics::with_local_recorder(&recorder, || {
        CircuitBreaker::builder().name("metered").build().unwrap()
    });
    let registry = BreakerRegistry::new();
    registry.register(&breaker);
    let admin = Admin::builder()
        .registry(&registry)
        .bearer_token(TOKEN)
        .build()
        .unwrap();
    let addr = serve(&admin).await;
    let http = client();
    for state in [State::ForcedOpen, State::Disabled, State::Closed] {
        let action = match state {
            State::ForcedOpen => "force_open",
            State::Disabled => "disable",
            _ => "reset",
        };
        let response = http
            .post(format!("http://{addr}/breakers/metered/{action}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let gauge = recorder.gauge(
            names::CIRCUIT_BREAKER_STATE,
            &[("breaker", "metered"), ("state", state.as_str())],
        );
        assert_eq!(gauge, 1.0, "{action}");
    }
}
