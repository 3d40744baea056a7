//! Request bodies that can be sent again, and response bodies judged at their end.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

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

impl Recorder {
    pub(crate) fn new(source: tonic::body::Body, limit: usize) -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder {
            source: Some(source),
            frames: VecDeque::new(),
            overflowed: false,
            bytes: 0,
            limit,
            done: false,
        }))
    }
}

/// Whether another attempt can send the whole body again.
pub(crate) fn replayable(recorder: &Mutex<Recorder>) -> bool {
    !recorder
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .overflowed
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
