//! Accept errors under a full fd table: logged once per episode, accepting resumes once fds are
//! free again. Alone in its test binary: the fd limit and the log subscriber are the process's.
#![cfg(target_os = "linux")]

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harden::shutdown::Shutdown;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use support::server::{raw_get_on, start};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Counts harden's warnings and errors.
struct Warnings(Arc<AtomicUsize>);

impl Subscriber for Warnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target().starts_with("harden") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

// Each failed accept under fd exhaustion logged a warning and retried after 10 ms: ~90 a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_are_logged_once_per_episode_and_accepting_resumes() {
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(Warnings(Arc::clone(&warnings))).unwrap();
    let server = start(Shutdown::builder().signals(false).build().unwrap()).await;

    // Fill the fd table with files, then free one slot for the client: the server's accept of
    // that connection fails with EMFILE until the files are closed.
    let limit = getrlimit(Resource::Nofile);
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(open + 64),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let mut files = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        files.push(file);
        assert!(files.len() < 10_000, "the fd limit did not apply");
    }
    files.pop();
    let mut client = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        1,
        "one warning per episode"
    );

    drop(files);
    setrlimit(Resource::Nofile, limit).unwrap();
    let hello = tokio::time::timeout(
        Duration::from_secs(30),
        raw_get_on(&mut client, "/api/hello"),
    )
    .await
    .expect("accepting did not resume")
    .unwrap();
    assert_eq!(hello.status, 200);
    assert_eq!(warnings.load(Ordering::SeqCst), 1);
    server.handle.trigger();
    drop(client);
    let report = server.report(Duration::from_secs(30)).await;
    assert_eq!(report.aborted, 0);
}
