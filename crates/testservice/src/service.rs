//! The `grpc.testing.TestService` implementation.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use tokio::time::{Instant, Sleep};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::observer::{CallGuard, CallObserver};
use crate::pb::test_service_server::TestService;
use crate::pb::unimplemented_service_server::UnimplementedService;
use crate::pb::{
    EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

/// The response stream type of the streaming methods.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingOutputCallResponse, Status>> + Send + 'static>>;

/// The default `server_id` / `hostname` reported when a request asks for it.
pub const DEFAULT_SERVER_ID: &str = "weir-testservice";

/// The interop `TestService` (and `UnimplementedService`).
///
/// Behaviour, per method:
///
/// * `EmptyCall`: answers `Empty`.
/// * `UnaryCall`, `CacheableUnaryCall`: answers `response_size` zero bytes;
///   a non-zero `response_status` ends the call with that status instead.
///   `server_id` and `hostname` are filled when `fill_server_id` is set.
/// * `StreamingOutputCall`: answers each `response_parameters` entry in
///   order, after sleeping its `interval_us`; messages are produced lazily,
///   one by one. A non-zero `response_status` ends the stream with that
///   status after the messages.
/// * `StreamingInputCall`: answers the total size of the payloads received.
/// * `FullDuplexCall`: answers each request as soon as it arrives, like
///   `StreamingOutputCall` does (a non-zero `response_status` in a request
///   ends the call after that request's messages).
/// * `HalfDuplexCall`: waits for the client to finish sending, then answers
///   every request in order, the same way.
/// * `UnimplementedCall` (of both services): `UNIMPLEMENTED`.
///
/// Negative sizes or intervals are `INVALID_ARGUMENT`. The `grpc-timeout`
/// request header is enforced by the handlers themselves (including in the
/// middle of a response stream), so the deadline holds whatever transport
/// serves the service.
///
/// The metadata echo of the interop tests is done by
/// [`EchoMetadataLayer`](crate::EchoMetadataLayer), which
/// [`into_service`](Self::into_service) adds.
#[derive(Debug, Clone)]
pub struct TestServiceImpl {
    observer: Option<Arc<CallObserver>>,
    server_id: Arc<str>,
}

impl Default for TestServiceImpl {
    fn default() -> Self {
        Self {
            observer: None,
            server_id: Arc::from(DEFAULT_SERVER_ID),
        }
    }
}

impl TestServiceImpl {
    /// The service with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports every call to `observer` (started / completed / cancelled).
    pub fn with_observer(mut self, observer: Arc<CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sets the `server_id` and `hostname` reported when a request sets
    /// `fill_server_id` (default [`DEFAULT_SERVER_ID`]).
    pub fn with_server_id(mut self, server_id: impl Into<String>) -> Self {
        self.server_id = Arc::from(server_id.into());
        self
    }

    /// The observer set by [`with_observer`](Self::with_observer), if any.
    pub fn observer(&self) -> Option<&Arc<CallObserver>> {
        self.observer.as_ref()
    }

    /// A tonic [`Routes`](tonic::service::Routes) serving `TestService` and
    /// `UnimplementedService`, without the metadata echo. Unknown services
    /// and methods answer `UNIMPLEMENTED`.
    pub fn into_routes(self) -> tonic::service::Routes {
        tonic::service::Routes::new(crate::pb::test_service_server::TestServiceServer::new(
            self.clone(),
        ))
        .add_service(crate::pb::unimplemented_service_server::UnimplementedServiceServer::new(self))
        .prepare()
    }

    /// The complete interop server: [`into_routes`](Self::into_routes)
    /// wrapped in [`EchoMetadataLayer`](crate::EchoMetadataLayer).
    pub fn into_service(self) -> crate::TestServer {
        crate::EchoMetadata::new(self.into_routes())
    }

    fn guard(&self) -> CallGuard {
        CallGuard::start(self.observer.clone())
    }

    fn simple(&self, req: SimpleRequest) -> Result<SimpleResponse, Status> {
        if let Some(status) = echo_status(req.response_status.as_ref()) {
            return Err(status);
        }
        let mut response = SimpleResponse {
            payload: Some(payload(req.response_size)?),
            ..SimpleResponse::default()
        };
        if req.fill_server_id {
            response.server_id = self.server_id.to_string();
            response.hostname = self.server_id.to_string();
        }
        Ok(response)
    }
}

/// A payload of `size` zero bytes.
fn payload(size: i32) -> Result<Payload, Status> {
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("negative response size {size}")))?;
    Ok(Payload {
        r#type: PayloadType::Compressable as i32,
        body: vec![0; size],
    })
}

fn interval(params: &ResponseParameters) -> Result<Duration, Status> {
    u64::try_from(params.interval_us)
        .map(Duration::from_micros)
        .map_err(|_| Status::invalid_argument(format!("negative interval {}", params.interval_us)))
}

fn echo_status(status: Option<&EchoStatus>) -> Option<Status> {
    status
        .filter(|s| s.code != 0)
        .map(|s| Status::new(Code::from_i32(s.code), s.message.clone()))
}

/// The deadline announced by the `grpc-timeout` request header, if any.
fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

/// How a call failed.
enum Ended {
    /// The server ended it: requested status, invalid argument, deadline.
    Server(Status),
    /// The client broke it: reading the request stream failed (reset,
    /// disconnect, undecodable message). Counted as a cancellation.
    Client(Status),
}

impl Ended {
    fn into_status(self) -> Status {
        match self {
            Ended::Server(status) | Ended::Client(status) => status,
        }
    }
}

/// Reports how a call ended to its guard.
fn settle(guard: &mut CallGuard, error: Option<&Ended>) {
    match error {
        Some(Ended::Client(_)) => guard.cancel(),
        Some(Ended::Server(_)) | None => guard.finish(),
    }
}

/// Runs a handler body under the request deadline.
async fn within<T>(
    deadline: Option<Instant>,
    body: impl Future<Output = Result<T, Ended>>,
) -> Result<T, Ended> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, body)
            .await
            .unwrap_or_else(|_| Err(Ended::Server(deadline_exceeded()))),
        None => body.await,
    }
}

/// One thing a streaming handler does, in order.
enum Step {
    /// Sleep `interval_us`, then send a message of `size` bytes.
    Respond(ResponseParameters),
    /// End the call.
    Fail(Ended),
}

fn steps_for(req: StreamingOutputCallRequest) -> VecDeque<Step> {
    let mut steps: VecDeque<Step> = req
        .response_parameters
        .into_iter()
        .map(Step::Respond)
        .collect();
    if let Some(status) = echo_status(req.response_status.as_ref()) {
        steps.push_back(Step::Fail(Ended::Server(status)));
    }
    steps
}

/// Plays `steps` lazily: each message is made only when the transport asks
/// for the next one.
fn play(
    steps: VecDeque<Step>,
) -> impl Stream<Item = Result<StreamingOutputCallResponse, Ended>> + Send + 'static {
    stream::unfold(steps, |mut steps| async move {
        let item = match steps.pop_front()? {
            Step::Respond(params) => match interval(&params) {
                Ok(interval) => {
                    if !interval.is_zero() {
                        tokio::time::sleep(interval).await;
                    }
                    payload(params.size)
                        .map(|payload| StreamingOutputCallResponse {
                            payload: Some(payload),
                        })
                        .map_err(Ended::Server)
                }
                Err(status) => Err(Ended::Server(status)),
            },
            Step::Fail(ended) => Err(ended),
        };
        Some((item, steps))
    })
}

struct Drive<S> {
    inner: Pin<Box<S>>,
    deadline: Option<Pin<Box<Sleep>>>,
    guard: CallGuard,
    done: bool,
}

/// Wraps a response stream: enforces the deadline, stops after the first
/// error, and reports completion (or, when dropped early or broken by the
/// client, cancellation) to the call guard.
fn drive<S>(inner: S, deadline: Option<Instant>, guard: CallGuard) -> ResponseStream
where
    S: Stream<Item = Result<StreamingOutputCallResponse, Ended>> + Send + 'static,
{
    let state = Drive {
        inner: Box::pin(inner),
        deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        guard,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let next = match state.deadline.as_mut() {
            // Once the deadline has passed, the call is over even if a
            // message is ready.
            Some(sleep) => tokio::select! {
                biased;
                () = sleep => Some(Err(Ended::Server(deadline_exceeded()))),
                item = state.inner.next() => item,
            },
            None => state.inner.next().await,
        };
        match next {
            Some(Ok(message)) => Some((Ok(message), state)),
            Some(Err(ended)) => {
                state.done = true;
                settle(&mut state.guard, Some(&ended));
                Some((Err(ended.into_status()), state))
            }
            None => {
                state.guard.finish();
                None
            }
        }
    }))
}

#[tonic::async_trait]
impl TestService for TestServiceImpl {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        let mut guard = self.guard();
        guard.finish();
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let mut guard = self.guard();
        let deadline = deadline(request.metadata());
        let result = within(deadline, async {
            self.simple(request.into_inner()).map_err(Ended::Server)
        })
        .await;
        settle(&mut guard, result.as_ref().err());
        result.map(Response::new).map_err(Ended::into_status)
    }

    async fn cacheable_unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        self.unary_call(request).await
    }

    type StreamingOutputCallStream = ResponseStream;

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<Self::StreamingOutputCallStream>, Status> {
        let mut guard = self.guard();
        let deadline = deadline(request.metadata());
        let req = request.into_inner();
        for params in &req.response_parameters {
            if let Err(status) = payload_size_check(params) {
                guard.finish();
                return Err(status);
            }
        }
        Ok(Response::new(drive(play(steps_for(req)), deadline, guard)))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut guard = self.guard();
        let deadline = deadline(request.metadata());
        let mut input = request.into_inner();
        let result = within(deadline, async move {
            let mut total: usize = 0;
            while let Some(req) = input.message().await.map_err(Ended::Client)? {
                let size = req.payload.map_or(0, |p| p.body.len());
                total = total.saturating_add(size);
            }
            let aggregated_payload_size = i32::try_from(total).map_err(|_| {
                Ended::Server(Status::out_of_range(
                    "aggregated payload size overflows int32",
                ))
            })?;
            Ok(StreamingInputCallResponse {
                aggregated_payload_size,
            })
        })
        .await;
        settle(&mut guard, result.as_ref().err());
        result.map(Response::new).map_err(Ended::into_status)
    }

    type FullDuplexCallStream = ResponseStream;

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::FullDuplexCallStream>, Status> {
        let guard = self.guard();
        let deadline = deadline(request.metadata());
        let responses = request.into_inner().flat_map(|req| {
            play(match req {
                Ok(req) => steps_for(req),
                Err(status) => VecDeque::from([Step::Fail(Ended::Client(status))]),
            })
        });
        Ok(Response::new(drive(responses, deadline, guard)))
    }

    type HalfDuplexCallStream = ResponseStream;

    async fn half_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<Self::HalfDuplexCallStream>, Status> {
        let guard = self.guard();
        let deadline = deadline(request.metadata());
        let mut input = request.into_inner();
        let collect = async move {
            let mut steps = VecDeque::new();
            loop {
                match input.message().await {
                    Ok(Some(req)) => steps.extend(steps_for(req)),
                    Ok(None) => break,
                    Err(status) => {
                        steps.push_back(Step::Fail(Ended::Client(status)));
                        break;
                    }
                }
            }
            play(steps)
        };
        let responses = stream::once(collect).flatten();
        Ok(Response::new(drive(responses, deadline, guard)))
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        let mut guard = self.guard();
        guard.finish();
        Err(Status::unimplemented(
            "grpc.testing.TestService/UnimplementedCall is not implemented",
        ))
    }
}

fn payload_size_check(params: &ResponseParameters) -> Result<(), Status> {
    interval(params)?;
    if params.size < 0 {
        return Err(Status::invalid_argument(format!(
            "negative response size {}",
            params.size
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl UnimplementedService for TestServiceImpl {
    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "grpc.testing.UnimplementedService is not implemented",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().ok()?);
        let now = Instant::now();
        deadline(&metadata).map(|at| at.duration_since(now))
    }

    #[test]
    fn parses_grpc_timeout() {
        let near = |d: Option<Duration>, want: Duration| {
            d.is_some_and(|d| d >= want && d < want + Duration::from_millis(50))
        };
        assert!(near(timeout_of("1S"), Duration::from_secs(1)));
        assert!(near(timeout_of("2M"), Duration::from_secs(120)));
        assert!(near(timeout_of("1H"), Duration::from_secs(3600)));
        assert!(near(timeout_of("250m"), Duration::from_millis(250)));
        assert!(near(
            timeout_of("99999999u"),
            Duration::from_micros(99_999_999)
        ));
        assert!(near(timeout_of("5n"), Duration::from_nanos(5)));
        assert_eq!(timeout_of("S"), None);
        assert_eq!(timeout_of("123456789S"), None);
        assert_eq!(timeout_of("10x"), None);
        assert_eq!(timeout_of("-1S"), None);
    }

    #[test]
    fn payload_sizes() {
        assert_eq!(payload(3).ok().map(|p| p.body), Some(vec![0, 0, 0]));
        assert_eq!(
            payload(-1).err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
    }
}
