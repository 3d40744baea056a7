//! One connection of [`Shutdown::serve`](super::Shutdown::serve): protocol detection under the
//! header timeout, hyper's HTTP/1 or HTTP/2 connection, its graceful close (HTTP/2 at the
//! trigger or after its first response, every connection when the drain is over), and the
//! upgraded session it may become.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tower::ServiceExt;
use tower_service::Service;

use super::layer::ShutdownService;
use super::state::{Shared, Signal};
use super::timer::HeaderTimer;
use crate::BoxError;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// When the drain is over, how long an HTTP/1 connection has to deliver what its client already
/// sent (a request on the wire, in the socket buffer, or half read) and get its 503 before an
/// idle connection is closed: a request sent before the close arrives within a round trip, far
/// below this on any network a server runs in; a slowloris is closed after it.
const LATE_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// hyper's two connection builders, configured once per `serve`.
pub(crate) struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Option<Duration>,
}

impl Builders {
    pub(crate) fn new(header_read_timeout: Option<Duration>) -> Self {
        let mut http1 = http1::Builder::new();
        if let Some(timeout) = header_read_timeout {
            // hyper arms this timer for every request head: `HeaderTimer` reuses its entries.
            http1.timer(HeaderTimer::new()).header_read_timeout(timeout);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Builders {
            http1,
            http2,
            header_read_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves one accepted connection until it closes, is told to close, or is aborted.
pub(crate) async fn serve_connection<I, S>(
    mut io: I,
    service: ShutdownService<S>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut prefix = [0u8; PREFACE.len()];
    // Protocol detection reads before hyper's HTTP/1 header timer exists: the same timeout
    // applies, or a client that sends nothing (or half the HTTP/2 preface) holds an fd forever.
    let detected = {
        let mut detect = pin!(detect(&mut io, &mut prefix));
        let timeout = async {
            match builders.header_read_timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            detected = &mut detect => detected,
            () = timeout => return,
            () = shared.closing.wait() => tokio::select! {
                biased;
                detected = &mut detect => detected,
                () = tokio::time::sleep(LATE_REQUEST_GRACE) => {
                    // Accepted, and closed before its request arrived: its client connected to
                    // send one, and sees the connection closed instead.
                    if !shared.cut.is_fired() {
                        // Relaxed: a statistic read after every connection is joined.
                        shared.unanswered.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            },
        }
    };
    let Ok(Some((protocol, len))) = detected else {
        return;
    };
    let state = Arc::new(ConnState {
        state: AtomicU8::new(OPEN),
        unanswered: AtomicBool::new(true),
        shared: Arc::clone(&shared),
    });
    let io = TokioIo::new(ConnIo {
        inner: io,
        prefix,
        prefix_at: 0,
        prefix_len: len,
        protocol,
        unanswered: true,
        state: Arc::clone(&state),
        cut: None,
        shut: false,
        linger: None,
    });
    // An HTTP/2 connection accepted after the trigger gets its GOAWAY after its first response
    // (see `told`), so this one is told when a response is ready.
    let answered = (protocol == Protocol::Http2 && shared.is_shutting_down())
        .then(|| Arc::new(Signal::default()));
    let on_response = answered.clone();
    let service = TowerToHyperService::new(service.map_response(move |response| {
        if let Some(answered) = &on_response {
            answered.fire();
        }
        response
    }));
    {
        let conn = match protocol {
            Protocol::Http1 => Conn::H1 {
                conn: builders.http1.serve_connection(io, service).with_upgrades(),
            },
            Protocol::Http2 => Conn::H2 {
                conn: builders.http2.serve_connection(io, service),
            },
        };
        let mut conn = pin!(conn);
        // HTTP/2 gets its GOAWAY at the trigger: the client learns which streams were taken and
        // opens new ones elsewhere. One accepted after the trigger gets it after its first
        // response (sent before its first request, it leaves the client that connected to send
        // one without an answer), or when the drain is over if it sends nothing. HTTP/1 is told by
        // `Connection: close` on its next response (the layer), and closed when the drain is
        // over, after a grace.
        let told = async {
            match (protocol, &answered) {
                (Protocol::Http1, _) => shared.closing.wait().await,
                (Protocol::Http2, Some(answered)) => tokio::select! {
                    () = answered.wait() => {}
                    () = shared.closing.wait() => {}
                },
                (Protocol::Http2, None) => shared.goaway.wait().await,
            }
        };
        let mut told = pin!(told);
        let mut told_fired = false;
        let grace = tokio::time::sleep(Duration::ZERO);
        let mut grace = pin!(grace);
        let mut grace_armed = false;
        loop {
            tokio::select! {
                biased;
                _ = conn.as_mut() => break,
                () = &mut told, if !told_fired => {
                    told_fired = true;
                    match protocol {
                        Protocol::Http2 => conn.as_mut().graceful_shutdown(),
                        // hyper's graceful close drops a connection it sees as idle, even with
                        // a request read but not yet parsed, or unread in the socket: first
                        // the grace, in which what the client sent is read and answered (a 503
                        // with `Connection: close`, after which hyper closes it).
                        Protocol::Http1 => {
                            grace.as_mut().reset(tokio::time::Instant::now() + LATE_REQUEST_GRACE);
                            grace_armed = true;
                        }
                    }
                }
                // The timer fires after a turn of the IO driver, and `conn` is polled first: bytes
                // that were in the socket when the grace ended have been read by now.
                () = &mut grace, if grace_armed => {
                    grace_armed = false;
                    // Relaxed: written by this connection's IO, polled on this task.
                    if state.unanswered.load(Ordering::Relaxed) {
                        // A request still incomplete (or a handler still running): closed,
                        // and counted by `ConnIo::drop`.
                        break;
                    }
                    // Idle: closed at once. A response being written: finished first.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    // hyper's connection is gone: an IO still alive belongs to an upgraded session.
    shared.upgrade_started();
    // AcqRel/Acquire: pairs with the swap in `ConnIo::drop`; exactly one side sees the other.
    if state
        .state
        .compare_exchange(OPEN, UPGRADED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        shared.upgrade_ended();
    }
}

/// Reads until the bytes tell HTTP/2's preface from HTTP/1, as hyper-util's `auto` builder does;
/// `ConnIo` replays them to hyper. `None`: the client closed first.
async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut [u8; PREFACE.len()],
) -> io::Result<Option<(Protocol, usize)>> {
    let mut len = 0;
    loop {
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        if buf[..len] != PREFACE[..len] {
            return Ok(Some((Protocol::Http1, len)));
        }
        if len == PREFACE.len() {
            return Ok(Some((Protocol::Http2, len)));
        }
    }
}

pin_project! {
    #[project = ConnProj]
    enum Conn<I, S>
    where
        S: HttpService<Incoming>,
    {
        H1 { #[pin] conn: http1::UpgradeableConnection<I, S> },
        H2 { #[pin] conn: http2::Connection<I, S, TokioExecutor> },
    }
}

impl<I, S> Conn<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = Body>,
    S::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, Body>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ConnProj::H1 { conn } => conn.graceful_shutdown(),
            ConnProj::H2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<I, S> Future for Conn<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = Body>,
    S::Error: Into<BoxError>,
    TokioExecutor: Http2ServerConnExec<S::Future, Body>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnProj::H1 { conn } => conn.poll(cx),
            ConnProj::H2 { conn } => conn.poll(cx),
        }
    }
}

const OPEN: u8 = 0;
const UPGRADED: u8 = 1;
const CLOSED: u8 = 2;

/// Shared by a connection's task and its IO, which outlives the task when upgraded.
struct ConnState {
    state: AtomicU8,
    /// `ConnIo::unanswered`, for the connection's task.
    unanswered: AtomicBool,
    shared: Arc<Shared>,
}

/// The connection's IO as hyper sees it: replays the bytes read by `detect`, notices request
/// bytes left unanswered when the server closes it, and cuts an upgraded session at the deadline.
struct ConnIo<I: AsyncRead + Unpin> {
    inner: I,
    prefix: [u8; PREFACE.len()],
    prefix_at: usize,
    prefix_len: usize,
    protocol: Protocol,
    /// Bytes were read since the last bytes were written: a request not answered (yet).
    unanswered: bool,
    state: Arc<ConnState>,
    /// Armed on the first read or write after an upgrade.
    cut: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The write side was shut down (hyper's close).
    shut: bool,
    /// Armed when the server closes the connection at the end of the drain.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I: AsyncRead + Unpin> ConnIo<I> {
    fn set_unanswered(&mut self, unanswered: bool) {
        if self.unanswered != unanswered {
            self.unanswered = unanswered;
            // Relaxed: read by the connection's task, which polls this IO itself.
            self.state.unanswered.store(unanswered, Ordering::Relaxed);
        }
    }

    /// After the server's close at the end of the drain, reads on until the client closes too or
    /// [`LATE_REQUEST_GRACE`] is over, as nginx's lingering close does: a request written as
    /// the connection closed is seen and counted (by `drop`), and its client gets the close
    /// rather than a reset.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let linger = self
            .linger
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LATE_REQUEST_GRACE)));
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => self.unanswered = true,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return linger.as_mut().poll(cx),
            }
        }
    }

    /// For an upgraded session: an error once the deadline has cut it.
    fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        // Relaxed: a session that reads the old value is cut on its next read or write.
        if self.state.state.load(Ordering::Relaxed) != UPGRADED {
            return Poll::Pending;
        }
        let shared = Arc::clone(&self.state.shared);
        let cut = self
            .cut
            .get_or_insert_with(|| Box::pin(async move { shared.cut.wait().await }));
        cut.as_mut().poll(cx).map(|()| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "upgraded connection cut at the shutdown deadline",
            )
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        if this.prefix_at < this.prefix_len {
            let rest = &this.prefix[this.prefix_at..this.prefix_len];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.prefix_at += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.set_unanswered(true);
        }
        read
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.set_unanswered(false);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_cut(cx) {
            return Poll::Ready(Err(err));
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.set_unanswered(false);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
        }
        // Relaxed: a session reading OPEN just after its upgrade lingers once, at most the grace.
        if this.protocol == Protocol::Http1
            && this.state.shared.closing.is_fired()
            && this.state.state.load(Ordering::Relaxed) == OPEN
        {
            ready!(this.poll_linger(cx));
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> Drop for ConnIo<I> {
    fn drop(&mut self) {
        // AcqRel: pairs with the compare-exchange in `serve_connection`.
        if self.state.state.swap(CLOSED, Ordering::AcqRel) == UPGRADED {
            self.state.shared.upgrade_ended();
            return;
        }
        let shared = &self.state.shared;
        // An HTTP/1 request that raced the close at the end of the drain: read and not
        // answered, or still unread. Cut connections are counted by `serve`.
        if self.protocol == Protocol::Http1
            && shared.closing.is_fired()
            && !shared.cut.is_fired()
            && (self.unanswered || has_unread(&mut self.inner))
        {
            // Relaxed: a statistic read after every connection is joined.
            shared.unanswered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the peer sent bytes nobody read (one read that never waits).
fn has_unread<I: AsyncRead + Unpin>(io: &mut I) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(
        Pin::new(io).poll_read(&mut cx, &mut buf),
        Poll::Ready(Ok(()))
    ) && !buf.filled().is_empty()
}
