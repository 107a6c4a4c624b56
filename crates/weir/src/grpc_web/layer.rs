use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::GrpcWebService;
use crate::Cors;

/// Default limit on one message in either direction, as in gRPC implementations (4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default limit on the request's header block (names and values), 16 KiB.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cors: Cors,
    pub(crate) max_request_message_size: usize,
    pub(crate) max_response_message_size: usize,
    pub(crate) max_header_list_size: usize,
    pub(crate) heartbeat_min: Duration,
    pub(crate) heartbeat_max: Duration,
}

/// A [`Layer`] that adds gRPC-Web to a gRPC service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct GrpcWebLayer {
    config: Arc<Config>,
}

impl Default for GrpcWebLayer {
    fn default() -> Self {
        GrpcWebLayer::new()
    }
}

impl GrpcWebLayer {
    /// A layer with safe defaults: cross-origin calls denied, 4 MiB messages each way,
    /// 16 KiB of request headers.
    pub fn new() -> Self {
        GrpcWebLayer {
            config: Arc::new(Config {
                cors: Cors::default(),
                max_request_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                max_response_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
                heartbeat_min: Duration::from_secs(1),
                heartbeat_max: Duration::from_secs(300),
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the CORS policy.
    pub fn cors(mut self, cors: Cors) -> Self {
        self.config_mut().cors = cors;
        self
    }

    /// Limits each request message; larger ones end the call with `RESOURCE_EXHAUSTED`
    /// before their payload is read.
    pub fn max_request_message_size(mut self, limit: usize) -> Self {
        self.config_mut().max_request_message_size = limit;
        self
    }

    /// Limits each response message; a larger one ends the call with `RESOURCE_EXHAUSTED`
    /// and cancels the service's stream.
    pub fn max_response_message_size(mut self, limit: usize) -> Self {
        self.config_mut().max_response_message_size = limit;
        self
    }

    /// Limits the request's header block (sum of name and value lengths); a larger one is
    /// answered with `RESOURCE_EXHAUSTED` without calling the service.
    pub fn max_header_list_size(mut self, limit: usize) -> Self {
        self.config_mut().max_header_list_size = limit;
        self
    }

    /// Bounds of the heartbeat interval a client may ask for with the `weir-heartbeat`
    /// request header (default 1 s to 5 min; see `docs/protocol/heartbeat.md`). Requests
    /// outside the bounds are clamped to them.
    pub fn heartbeat_bounds(mut self, min: Duration, max: Duration) -> Self {
        let config = self.config_mut();
        config.heartbeat_min = min.max(Duration::from_millis(1));
        config.heartbeat_max = max.max(config.heartbeat_min);
        self
    }
}

impl<S> Layer<S> for GrpcWebLayer {
    type Service = GrpcWebService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebService::new(inner, self.config.clone())
    }
}
