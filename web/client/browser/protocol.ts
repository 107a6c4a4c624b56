// What the parity page (page.ts) exposes to the browser suite. Only
// JSON-friendly values cross the boundary.

export type TransportKind = "fetch" | "xhr" | "webtransport" | "auto";
export type WireFormat = "binary" | "text";

export interface TransportSpec {
  kind: TransportKind;
  format: WireFormat;
  baseUrl: string;
  heartbeat?: { interval: number; graceMs?: number };
  /** webtransport/auto: the session URL and hashes (else the discovery document at baseUrl). */
  url?: string;
  certificateHashes?: string[];
  /** auto: send every call over WebTransport. */
  all?: boolean;
}

export type Method =
  | "EmptyCall"
  | "UnaryCall"
  | "StreamingOutputCall"
  | "StreamingInputCall"
  | "HalfDuplexCall"
  | "FullDuplexCall"
  | "UnimplementedCall"
  | "UnimplementedService";

export interface RequestSpec {
  responseSize?: number;
  payloadSize?: number;
  responseStatus?: { code: number; message: string };
  responseParameters?: { size: number; intervalUs?: number }[];
}

export interface CallSpec {
  transport: TransportSpec;
  method: Method;
  /** One request (unary, server streaming) or the request stream. */
  requests: RequestSpec[];
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** `immediately`: abort right after starting; `afterMessages`: abort after N messages. */
  cancel?: { at: "immediately" } | { at: "afterMessages"; count: number; delayMs?: number } | { at: "afterMs"; ms: number };
  /** Streaming requests: keep the request stream open (never end it) after sending. */
  keepRequestOpen?: boolean;
  /** Bidi: send request i+1 only after response i arrived (ping_pong). */
  pingPong?: boolean;
  /** Sample the JS heap (after gc) before the call and at this message index. */
  heapAt?: number;
  /** Return only a count of messages, not each size. */
  countOnly?: boolean;
}

export interface CallOutcome {
  /** 0 for OK, else the ConnectError code. */
  code: number;
  message: string;
  sizes: number[];
  count: number;
  header: Record<string, string> | null;
  trailer: Record<string, string> | null;
  /** ms from call start: headers seen, first message, end. */
  headerAt: number | null;
  firstMessageAt: number | null;
  endAt: number;
  /** usedJSHeapSize growth between call start and message heapAt (bytes), if asked. */
  heapGrowth?: number;
  /** auto: the transport each call took. */
  choices?: string[];
  /** fetch and auto: each fetch the call made, in order. */
  fetches?: FetchRecord[];
  /** Date.now() in the page when it aborted the call (epoch ms; same clock as the test's). */
  abortedAt?: number;
}

export interface SessionClosed {
  /** `onSessionClose`'s `by`; for `native`: "resolved" or "rejected". */
  by: string;
  closeCode?: number;
  reason?: string;
  error?: string;
  /** Date.now() in the page when it was seen. */
  at: number;
}

export interface FetchRecord {
  body: "stream" | "buffered";
  outcome: "response" | "rejected";
  error?: string;
}

export interface ParityPage {
  call(spec: CallSpec): Promise<CallOutcome>;
  hasRequestStreams(): boolean;
  /** Runs `n` calls at once. */
  callMany(spec: CallSpec, n: number): Promise<CallOutcome[]>;
  /** WebTransport sessions this page constructed so far. */
  sessionsOpened(): number;
  /** Closes the WebTransport session for this transport's endpoint. */
  closeSession(t: TransportSpec): void;
  /**
   * How each WebTransport session of the page ended so far, in order: what the
   * browser's `WebTransport.closed` settled with (`native`), and what the
   * transports' `onSessionClose` reported (`reported`).
   */
  sessionsClosed(): { native: SessionClosed[]; reported: SessionClosed[] };
  hasWebTransport(): boolean;
}

declare global {
  interface Window {
    weirParity: ParityPage;
  }
}
