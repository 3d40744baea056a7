//! Request bodies that can be sent again, and response bodies judged at their end.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::client::Settle;
use crate::BoxError;

/// The request body shared by a call's attempts: what was read of it so far (while it fits in
/// the limit), and the rest, not read yet. An attempt replays what was read, then reads on.
pub(crate) struct Recorder {
    source: Option<tonic::body::Body>,
    frames: VecDeque<Frame<Bytes>>,
    /// Frames dropped from the front once the limit was passed: no attempt after that.
    overflowed: bool,
    bytes: usize,
    limit: usize,
    done: bool,
}

/// The request body of a call that may be retried, as its attempts share it.
pub(crate) enum Kept {
    /// The whole body was there when the call was made (a unary request: one encoded
    /// message): its one data frame, if any, which every attempt sends by refcount, no lock.
    Whole(Option<Bytes>),
    /// A body still arriving: the attempts read it through a recorder.
    Recording(Arc<Mutex<Recorder>>),
}

/// What of a body was there when the call was made.
enum Ahead {
    /// The whole body: no frame, or one data frame.
    Whole(Option<Bytes>),
    /// A first data frame (within the limit), what came after it if anything did, and the rest.
    Started {
        data: Option<Bytes>,
        next: Option<Result<Frame<Bytes>, tonic::Status>>,
        rest: tonic::body::Body,
    },
}

/// Reads what of `body` is there already, without waiting: its first frame, and whether it
/// ends there. A body that is not ready is polled again, with the transport's waker, by the
/// attempt.
fn read_ahead(mut body: tonic::body::Body, limit: usize) -> Ahead {
    let mut cx = Context::from_waker(Waker::noop());
    let first = match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(None) => return Ahead::Whole(None),
        Poll::Pending => None,
        Poll::Ready(Some(first)) => Some(first),
    };
    let data = match first {
        Some(Ok(frame)) if frame.data_ref().is_some_and(|d| d.len() <= limit) => frame
            .into_data()
            .unwrap_or_else(|_| unreachable!("a data frame")),
        next => {
            return Ahead::Started {
                data: None,
                next,
                rest: body,
            }
        }
    };
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(None) => Ahead::Whole(Some(data)),
        Poll::Pending => Ahead::Started {
            data: Some(data),
            next: None,
            rest: body,
        },
        Poll::Ready(Some(next)) => Ahead::Started {
            data: Some(data),
            next: Some(next),
            rest: body,
        },
    }
}

/// `body` as sent by a call that is not retried: one whose frame is there at the call is sent
/// with its end (a frame fewer on the wire), any other as it comes.
pub(crate) fn once(body: tonic::body::Body) -> tonic::body::Body {
    match read_ahead(body, usize::MAX) {
        Ahead::Whole(None) => tonic::body::Body::empty(),
        Ahead::Whole(Some(data)) => tonic::body::Body::new(Whole(Some(data))),
        Ahead::Started {
            data: None,
            next: None,
            rest,
        } => rest,
        Ahead::Started { data, next, rest } => tonic::body::Body::new(Unread {
            first: data.map(|d| Ok(Frame::data(d))),
            second: next,
            rest,
        }),
    }
}

impl Kept {
    /// Reads what of `body` is there already, without waiting, and returns the first attempt's
    /// body with what the later attempts will send.
    pub(crate) fn new(body: tonic::body::Body, limit: usize) -> (tonic::body::Body, Kept) {
        match read_ahead(body, limit) {
            Ahead::Whole(None) => (tonic::body::Body::empty(), Kept::Whole(None)),
            Ahead::Whole(Some(data)) => {
                let attempt = tonic::body::Body::new(Whole(Some(data.clone())));
                (attempt, Kept::Whole(Some(data)))
            }
            Ahead::Started { data, next, rest } => Kept::recording(rest, data, next, limit),
        }
    }

    /// A recorder holding `read` (within the limit), reading on from `unread`, then `source`.
    fn recording(
        source: tonic::body::Body,
        read: Option<Bytes>,
        unread: Option<Result<Frame<Bytes>, tonic::Status>>,
        limit: usize,
    ) -> (tonic::body::Body, Kept) {
        let source = match unread {
            None => source,
            Some(next) => tonic::body::Body::new(Unread {
                first: Some(next),
                second: None,
                rest: source,
            }),
        };
        let bytes = read.as_ref().map_or(0, Bytes::len);
        let recorder = Arc::new(Mutex::new(Recorder {
            source: Some(source),
            frames: read.into_iter().map(Frame::data).collect(),
            overflowed: false,
            bytes,
            limit,
            done: false,
        }));
        let kept = Kept::Recording(recorder);
        (kept.attempt(), kept)
    }

    /// The body of an attempt: the whole body again, or what was recorded, then the rest.
    pub(crate) fn attempt(&self) -> tonic::body::Body {
        match self {
            Kept::Whole(None) => tonic::body::Body::empty(),
            Kept::Whole(Some(data)) => tonic::body::Body::new(Whole(Some(data.clone()))),
            Kept::Recording(recorder) => tonic::body::Body::new(AttemptBody::new(recorder.clone())),
        }
    }

    /// Whether another attempt can send the whole body again.
    pub(crate) fn replayable(&self) -> bool {
        match self {
            Kept::Whole(_) => true,
            Kept::Recording(recorder) => {
                !recorder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .overflowed
            }
        }
    }
}

/// A whole body of one data frame; it says it has ended as it hands the frame over, so the
/// transport sends the end with the frame.
struct Whole(Option<Bytes>);

impl Body for Whole {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// A body with its next frames already read.
struct Unread {
    first: Option<Result<Frame<Bytes>, tonic::Status>>,
    second: Option<Result<Frame<Bytes>, tonic::Status>>,
    rest: tonic::body::Body,
}

impl Body for Unread {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        match this.first.take().or_else(|| this.second.take()) {
            Some(next) => Poll::Ready(Some(next)),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.first, &self.second) {
            (None, None) => self.rest.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// One attempt's view of a [`Recorder`].
pub(crate) struct AttemptBody {
    recorder: Arc<Mutex<Recorder>>,
    next: usize,
}

impl AttemptBody {
    pub(crate) fn new(recorder: Arc<Mutex<Recorder>>) -> AttemptBody {
        AttemptBody { recorder, next: 0 }
    }
}

fn copy(frame: &Frame<Bytes>) -> Frame<Bytes> {
    match (frame.data_ref(), frame.trailers_ref()) {
        (Some(data), _) => Frame::data(data.clone()),
        (None, Some(trailers)) => Frame::trailers(trailers.clone()),
        (None, None) => Frame::data(Bytes::new()),
    }
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut rec = this.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.overflowed {
            if let Some(frame) = rec.frames.get(this.next) {
                this.next += 1;
                return Poll::Ready(Some(Ok(copy(frame))));
            }
        }
        if rec.done {
            return Poll::Ready(None);
        }
        let Some(source) = rec.source.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                rec.done = true;
                rec.source = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // A body that failed cannot be sent again.
                rec.overflowed = true;
                rec.frames.clear();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if !rec.overflowed {
                    rec.bytes += frame.data_ref().map_or(0, Bytes::len);
                    if rec.bytes > rec.limit {
                        rec.overflowed = true;
                        rec.frames.clear();
                    } else {
                        rec.frames.push_back(copy(&frame));
                        this.next += 1;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    // What the source says once the recorded frames are sent: a transport that learns the end
    // with the last frame sends it with that frame, not as an extra empty one later.
    fn is_end_stream(&self) -> bool {
        let rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.overflowed && self.next < rec.frames.len() {
            return false;
        }
        rec.done || rec.source.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let rec = self.recorder.lock().unwrap_or_else(|e| e.into_inner());
        if self.next == 0 && rec.frames.is_empty() {
            if let Some(source) = &rec.source {
                return source.size_hint();
            }
        }
        SizeHint::default()
    }
}

pin_project! {
    /// A response body through [`GrpcClient`](super::GrpcClient): the inner body, and for a
    /// streamed answer the circuit breaker's verdict, given once the status arrives in the
    /// trailers (or the stream fails). A body dropped before its end counts for nothing.
    pub struct GrpcBody<B> {
        #[pin]
        inner: B,
        settle: Option<Settle>,
    }
}

impl<B> GrpcBody<B> {
    pub(crate) fn new(inner: B, settle: Option<Settle>) -> Self {
        GrpcBody { inner, settle }
    }
}

impl<B> std::fmt::Debug for GrpcBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcBody")
            .field("settled", &self.settle.is_none())
            .finish_non_exhaustive()
    }
}

impl<B> Body for GrpcBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(ready) = &polled {
            let code = match ready {
                Some(Ok(frame)) => frame.trailers_ref().map(status_of),
                // The end without trailers: tower-http's reading, the call went through.
                None => Some(0),
                Some(Err(_)) => Some(tonic::Code::Unavailable as i32),
            };
            if let Some(code) = code {
                if let Some(settle) = this.settle.take() {
                    settle.finish(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn status_of(trailers: &HeaderMap) -> i32 {
    super::code::grpc_status(trailers).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    /// All of `body`'s data, or its error's message.
    async fn read(body: tonic::body::Body) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => data.extend_from_slice(frame.data_ref().map_or(&[][..], |d| d)),
                Err(e) => return Err(e.message().to_owned()),
            }
        }
        Ok(data)
    }

    fn one_frame(data: &'static [u8]) -> tonic::body::Body {
        let frames =
            futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from_static(data)))]);
        tonic::body::Body::new(StreamBody::new(frames))
    }

    #[tokio::test]
    async fn a_body_there_at_the_call_is_kept_whole_and_ends_with_its_frame() {
        let (first, kept) = Kept::new(one_frame(b"hello"), 1024);
        assert!(matches!(kept, Kept::Whole(Some(_))));
        assert!(kept.replayable());
        assert_eq!(first.size_hint().exact(), Some(5));
        let mut first = std::pin::pin!(first);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().unwrap(), &b"hello"[..]);
        assert!(first.is_end_stream(), "the end goes with the frame");
        assert_eq!(read(kept.attempt()).await.unwrap(), b"hello");
        assert_eq!(read(kept.attempt()).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn an_empty_body_is_kept_whole() {
        let (first, kept) = Kept::new(tonic::body::Body::empty(), 1024);
        assert!(kept.replayable());
        assert_eq!(read(first).await.unwrap(), b"");
        assert_eq!(read(kept.attempt()).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn a_body_still_arriving_is_recorded_for_the_next_attempt() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&'static [u8]>();
        let source =
            StreamBody::new(rx.map(|d| Ok::<_, Infallible>(Frame::data(Bytes::from_static(d)))));
        let (first, kept) = Kept::new(tonic::body::Body::new(source), 1024);
        assert!(matches!(kept, Kept::Recording(_)));
        tx.unbounded_send(b"ab").unwrap();
        tx.unbounded_send(b"cd").unwrap();
        drop(tx);
        assert_eq!(read(first).await.unwrap(), b"abcd");
        assert!(kept.replayable());
        assert_eq!(read(kept.attempt()).await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn a_body_of_several_frames_is_recorded_from_its_first() {
        let frames =
            futures::stream::iter([b"ab", b"cd"].map(|d: &'static [u8; 2]| {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(d)))
            }));
        let (first, kept) = Kept::new(tonic::body::Body::new(StreamBody::new(frames)), 1024);
        assert!(matches!(kept, Kept::Recording(_)));
        assert_eq!(read(first).await.unwrap(), b"abcd");
        assert_eq!(read(kept.attempt()).await.unwrap(), b"abcd");
    }

    #[tokio::test]
    async fn a_body_not_kept_is_sent_with_its_end_or_as_it_comes() {
        let mut whole = std::pin::pin!(once(one_frame(b"hello")));
        assert_eq!(whole.size_hint().exact(), Some(5));
        whole.frame().await.unwrap().unwrap();
        assert!(whole.is_end_stream(), "the end goes with the frame");

        let frames =
            futures::stream::iter([b"ab", b"cd", b"ef"].map(|d: &'static [u8; 2]| {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(d)))
            }));
        let body = tonic::body::Body::new(StreamBody::new(frames));
        assert_eq!(read(once(body)).await.unwrap(), b"abcdef");

        let (tx, rx) = futures::channel::mpsc::unbounded::<&'static [u8]>();
        let source =
            StreamBody::new(rx.map(|d| Ok::<_, Infallible>(Frame::data(Bytes::from_static(d)))));
        let body = once(tonic::body::Body::new(source));
        tx.unbounded_send(b"ab").unwrap();
        drop(tx);
        assert_eq!(read(body).await.unwrap(), b"ab");

        let frames =
            futures::stream::iter([Err::<Frame<Bytes>, _>(tonic::Status::internal("broken"))]);
        let body = once(tonic::body::Body::new(StreamBody::new(frames)));
        assert_eq!(read(body).await.unwrap_err(), "broken");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_sent_once_and_not_kept() {
        let (first, kept) = Kept::new(one_frame(b"hello"), 4);
        assert_eq!(read(first).await.unwrap(), b"hello");
        assert!(!kept.replayable());
    }

    #[tokio::test]
    async fn a_failed_body_passes_its_error_on_and_is_not_kept() {
        let frames =
            futures::stream::iter([Err::<Frame<Bytes>, _>(tonic::Status::internal("broken"))]);
        let (first, kept) = Kept::new(tonic::body::Body::new(StreamBody::new(frames)), 1024);
        assert_eq!(read(first).await.unwrap_err(), "broken");
        assert!(!kept.replayable());
    }
}
