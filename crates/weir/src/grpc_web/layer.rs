use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::GrpcWebService;
use crate::Cors;
use crate::edge::{Edge, EdgeConfig};

/// What the gRPC-Web front door itself decides; limits and deadlines are the edge's.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) cors: Cors,
    pub(crate) heartbeat_min: Duration,
    pub(crate) heartbeat_max: Duration,
}

/// A [`Layer`] that adds gRPC-Web to a gRPC service. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct GrpcWebLayer {
    config: Arc<Config>,
    edge: Arc<EdgeConfig>,
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
                heartbeat_min: Duration::from_secs(1),
                heartbeat_max: Duration::from_secs(300),
            }),
            edge: Arc::new(EdgeConfig::default()),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn edge_mut(&mut self) -> &mut EdgeConfig {
        Arc::make_mut(&mut self.edge)
    }

    /// Sets every limit of the call edge at once (see [`crate::edge`]): the same
    /// [`EdgeConfig`] a gateway gives its WebTransport endpoint, so both doors apply one
    /// policy. Native gRPC calls on the same port get it too.
    pub fn edge(mut self, edge: EdgeConfig) -> Self {
        self.edge = Arc::new(edge);
        self
    }

    /// Sets the CORS policy.
    pub fn cors(mut self, cors: Cors) -> Self {
        self.config_mut().cors = cors;
        self
    }

    /// Limits each request message; larger ones end the call with `RESOURCE_EXHAUSTED`
    /// before their payload is read.
    pub fn max_request_message_size(mut self, limit: usize) -> Self {
        self.edge_mut().max_request_message_size = limit;
        self
    }

    /// Limits each response message; a larger one ends the call with `RESOURCE_EXHAUSTED`
    /// and cancels the service's stream.
    pub fn max_response_message_size(mut self, limit: usize) -> Self {
        self.edge_mut().max_response_message_size = limit;
        self
    }

    /// Limits the request's header list (counted as HTTP/2 does: name, value and 32 bytes per
    /// field); a larger one is answered with `RESOURCE_EXHAUSTED` without calling the service.
    pub fn max_header_list_size(mut self, limit: usize) -> Self {
        self.edge_mut().max_header_list_size = limit;
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
        GrpcWebService::new(Edge::new(inner, self.edge.clone()), self.config.clone())
    }
}
