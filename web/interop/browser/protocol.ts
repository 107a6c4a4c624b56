// What the test page (browser/page.ts) exposes to the browser suite, and what
// it hands back. Only JSON-friendly values cross the boundary.

export type GrpcWebFormat = "text" | "binary";

/** A request described by sizes; the page builds the protobuf message. */
export interface RequestSpec {
  responseSize?: number;
  payloadSize?: number;
  responseStatus?: { code: number; message: string };
  responseParameters?: { size: number; intervalUs?: number }[];
}

export type UnaryMethod =
  | "TestService/EmptyCall"
  | "TestService/UnaryCall"
  | "TestService/UnimplementedCall"
  | "UnimplementedService/UnimplementedCall";

export interface CallSpec {
  baseUrl: string;
  format: GrpcWebFormat;
  request?: RequestSpec;
  /** Request metadata; values of `-bin` keys are base64. */
  metadata?: Record<string, string>;
  /** Milliseconds from now, sent as grpc-web's `deadline` metadata. */
  deadlineMs?: number;
}

export interface StreamSpec extends CallSpec {
  /** Call stream.cancel() on the first message. */
  cancelAfterFirst?: boolean;
}

export interface ReceivedMessage {
  /** Payload length, or -1 when the message has no payload (Empty). */
  size: number;
  zero: boolean;
}

export interface CallOutcome {
  /** gRPC status code; -1 when no status was reported. */
  code: number;
  details: string;
  messages: ReceivedMessage[];
  /** Initial metadata from the 'metadata' event, or null if it never fired. */
  headers: Record<string, string> | null;
  /** Trailing metadata from the 'status' event (or the error), or null. */
  trailers: Record<string, string> | null;
  /** Events observed after stream.cancel(), for the cancel case. */
  eventsAfterCancel?: string[];
}

export interface InteropPage {
  unary(method: UnaryMethod, spec: CallSpec): Promise<CallOutcome>;
  serverStreaming(spec: StreamSpec): Promise<CallOutcome>;
}

declare global {
  interface Window {
    interop: InteropPage;
  }
}
