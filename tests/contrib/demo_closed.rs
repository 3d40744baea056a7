//! Scene 2 of the demo resends a GET only when the server closed the connection before any
//! answer; every other failure counts as lost.

#[path = "../../examples/demo/closed.rs"]
mod closed;

use closed::closed_under_it;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .retry(reqwest::retry::never())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_connection_closed_after_the_request_and_before_the_answer_is_recognised() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/work", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // Read the request, then close without a byte of answer.
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await.unwrap();
    });
    let err = client().get(&url).send().await.unwrap_err();
    server.await.unwrap();
    assert!(closed_under_it(&err), "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_not_resent() {
    // A port that was just bound and released: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = client()
        .get(format!("http://{addr}/api/work"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(!closed_under_it(&err), "{err:?}");
}
