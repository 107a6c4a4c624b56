// Values fixed by the gRPC interop test descriptions, shared by the
// reference server, the Node suite and the browser page.

export const LARGE_REQUEST_SIZE = 271828;
export const LARGE_RESPONSE_SIZE = 314159;

/** Response sizes for server_streaming and ping_pong. */
export const STREAMING_RESPONSE_SIZES = [31415, 9, 2653, 58979] as const;
/** Request sizes for client_streaming and ping_pong. */
export const STREAMING_REQUEST_SIZES = [27182, 8, 1828, 45904] as const;
export const STREAMING_AGGREGATE_SIZE = 74922;

export const ECHO_INITIAL_KEY = "x-grpc-test-echo-initial";
export const ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin";
export const ECHO_INITIAL_VALUE = "test_initial_metadata_value";
export const ECHO_TRAILING_VALUE = new Uint8Array([0xab, 0xab, 0xab]);
/** ECHO_TRAILING_VALUE as it travels in a `-bin` header (base64). */
export const ECHO_TRAILING_VALUE_B64 = "q6ur";

export const STATUS_MESSAGE = "test status message";
export const SPECIAL_STATUS_MESSAGE =
  "\t\ntest with whitespace\r\nand Unicode BMP \u263A and non-BMP \u{1F608}\t\n";

/** gRPC status codes used by the suites (numeric, protocol independent). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  UNIMPLEMENTED: 12,
} as const;

/** Deadline used by timeout_on_sleeping_server, and how long the server sleeps. */
export const SHORT_DEADLINE_MS = 300;
export const SLEEP_US = 10_000_000;
