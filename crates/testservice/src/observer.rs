//! Counting calls, so tests can see that a handler noticed a cancellation.

use std::sync::Arc;

use tokio::sync::watch;

/// A snapshot of the counters kept by a [`CallObserver`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls whose handler started.
    pub started: u64,
    /// Calls whose handler ran to its end and handed a final status (OK or
    /// not) to the transport.
    pub completed: u64,
    /// Calls the client abandoned: the handler future or response stream was
    /// dropped before it finished (the client cancelled, reset the stream or
    /// disconnected), or reading the request stream failed.
    pub cancelled: u64,
}

impl CallCounts {
    /// Calls started but neither completed nor cancelled yet.
    pub fn in_flight(&self) -> u64 {
        self.started
            .saturating_sub(self.completed)
            .saturating_sub(self.cancelled)
    }
}

/// Counts the calls handled by a [`TestServiceImpl`](crate::TestServiceImpl).
///
/// Share one through [`TestServiceImpl::with_observer`](crate::TestServiceImpl::with_observer),
/// then read it with [`counts`](Self::counts) or wait for a condition with
/// [`wait_for`](Self::wait_for). A call counts as *cancelled* when the
/// server drops its handler (unary and client-streaming calls) or its response
/// stream (server-streaming and bidi calls) before the call finished, which is
/// what happens when the client resets the stream or disconnects, or when
/// reading the client's request stream fails.
///
/// Note that a client which merely stops reading, or a half-closed request
/// stream, is not a cancellation: the server only learns about it when the
/// HTTP/2 stream is reset (tonic clients reset it once both the response
/// stream and the request stream are dropped).
///
/// ```
/// use std::sync::Arc;
/// use weir_testservice::{CallObserver, TestServiceImpl};
///
/// let observer = Arc::new(CallObserver::new());
/// let _server = TestServiceImpl::new()
///     .with_observer(observer.clone())
///     .into_service();
/// // Serve `_server`, start a call and abort it on the client, then:
/// // `observer.wait_for(|c| c.cancelled >= 1).await;`
/// assert_eq!(observer.counts().in_flight(), 0);
/// ```
#[derive(Debug)]
pub struct CallObserver {
    counts: watch::Sender<CallCounts>,
}

impl Default for CallObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl CallObserver {
    /// A fresh observer, all counters at zero.
    pub fn new() -> Self {
        Self {
            counts: watch::Sender::new(CallCounts::default()),
        }
    }

    /// The current counters.
    pub fn counts(&self) -> CallCounts {
        *self.counts.borrow()
    }

    /// Waits until `condition` holds for the counters, and returns them.
    ///
    /// Returns at once if it already holds. Wrap in `tokio::time::timeout` to
    /// bound the wait.
    pub async fn wait_for(&self, mut condition: impl FnMut(&CallCounts) -> bool) -> CallCounts {
        let mut rx = self.counts.subscribe();
        match rx.wait_for(|c| condition(c)).await {
            Ok(counts) => *counts,
            // Unreachable while `self` (the sender) is alive.
            Err(_) => self.counts(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut CallCounts)) {
        self.counts.send_modify(f);
    }
}

/// Tracks one call: counts it started on creation, and on drop counts it
/// cancelled unless [`finish`](Self::finish) was called.
#[derive(Debug)]
pub(crate) struct CallGuard {
    observer: Option<Arc<CallObserver>>,
    finished: bool,
}

impl CallGuard {
    pub(crate) fn start(observer: Option<Arc<CallObserver>>) -> Self {
        if let Some(o) = &observer {
            o.update(|c| c.started += 1);
        }
        Self {
            observer,
            finished: false,
        }
    }

    /// Marks the call as completed (idempotent).
    pub(crate) fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Some(o) = &self.observer {
                o.update(|c| c.completed += 1);
            }
        }
    }
}

impl CallGuard {
    /// Marks the call as cancelled now (idempotent, and a no-op after
    /// [`finish`](Self::finish)).
    pub(crate) fn cancel(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Some(o) = &self.observer {
                o.update(|c| c.cancelled += 1);
            }
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.cancel();
    }
}
