// The protocol half of weir's transports: request headers and bodies, response
// validation, incremental frame parsing, heartbeats and error mapping. The
// I/O half (fetch, XHR) is a `Wire`: it sends one request and hands back the
// status, the headers and the body chunk by chunk.

import { type DescMessage, type DescMethodStreaming, type DescMethodUnary, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { parseTimeout, requestHeader, trailerParse, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc-web";
import { Base64Decoder, encodeBase64 } from "./base64.js";
import { FLAG_DATA, FLAG_TRAILER, FrameParser } from "./frames.js";
import { callController, frameMessages, watchAbort } from "./messages.js";
import { type CallParts, createShell, envelopeMessage } from "./shell.js";

export type Format = "binary" | "text";

export interface HeartbeatOptions {
  /** Interval to ask the server for, in milliseconds (sent as `weir-heartbeat`). */
  interval: number;
  /**
   * Grace added to twice the granted interval before an idle stream fails
   * with UNAVAILABLE (default 5000 ms; the heartbeat spec's rule).
   */
  graceMs?: number;
}

export interface TransportOptions {
  /** Base URL of the server, e.g. https://api.example.com (the method path is appended). */
  baseUrl: string;
  /** `binary` (application/grpc-web+proto, default) or `text` (application/grpc-web-text). */
  format?: Format;
  /** Ask for weir heartbeat frames and watch the stream for them. */
  heartbeat?: HeartbeatOptions;
  /** Largest response message accepted, from its length prefix (default 4 MiB). */
  readMaxBytes?: number;
  /** Largest request message sent (default 4 MiB). */
  writeMaxBytes?: number;
  /** Applied to every call without a timeout of its own. */
  defaultTimeoutMs?: number;
  interceptors?: Interceptor[];
  /**
   * A bidi call whose request stream is buffered (no request streams) must
   * end its request stream before answers can come. If the request stream
   * stalls this long before ending, the call fails with UNIMPLEMENTED
   * (full duplex needs WebTransport). Default 3000 ms.
   */
  bidiStallMs?: number;
}

export interface WireRequest {
  url: string;
  headers: Headers;
  /** The whole body, or (request streams) a stream of chunks. */
  body: Uint8Array | string | ReadableStream<Uint8Array>;
  signal: AbortSignal;
}

export interface WireResponse {
  status: number;
  headers: Headers;
  /** Next body chunk (base64 text as ASCII bytes in text mode), or null at the end. */
  read(): Promise<Uint8Array | null>;
  /** Stops reading and releases the connection. Idempotent. */
  cancel(): void;
}

export interface Wire {
  send(req: WireRequest): Promise<WireResponse>;
  /** Whether `send` may be given a ReadableStream body for `url`. */
  canStreamRequest?(url: string): boolean;
  /** Called when a streamed request failed the way a server without request-stream support fails. */
  requestStreamFailed?(url: string, err: unknown): boolean;
}

export const DEFAULT_READ_MAX_BYTES = 4 * 1024 * 1024;
/** How much of a request stream is kept for a resend as one body (see requestStream). */
export const RESEND_KEEP_BYTES = 1024 * 1024;
const HEARTBEAT_HEADER = "weir-heartbeat";
const CONTENT_TYPE = /^application\/grpc-web(-text)?(?:\+proto)?(?:;.*)?$/i;

/** Formats milliseconds in grpc-timeout syntax (at most 8 digits). */
export function formatInterval(ms: number): string {
  const v = Math.max(1, Math.ceil(ms));
  if (v % 1000 === 0 && v / 1000 <= 99_999_999) return `${v / 1000}S`;
  if (v <= 99_999_999) return `${v}m`;
  return `${Math.min(99_999_999, Math.ceil(v / 1000))}S`;
}

/** Maps a failure of the I/O layer to a ConnectError, preferring the abort reason. */
export function wireError(err: unknown, signal: AbortSignal): ConnectError {
  if (signal.aborted) return ConnectError.from(signal.reason ?? err, Code.Canceled);
  if (err instanceof ConnectError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ConnectError(`network error: ${msg}`, Code.Unavailable, undefined, undefined, err);
}

/**
 * Checks status and headers. Returns the trailer if the response is
 * trailers-only (grpc-status in the headers), undefined if frames follow.
 */
export function checkResponse(status: number, headers: Headers): Headers | undefined {
  const { foundStatus, headerError } = validateResponse(status, headers);
  if (headerError !== undefined) throw headerError;
  if (foundStatus) return headers;
  const ct = headers.get("content-type") ?? "";
  if (!CONTENT_TYPE.test(ct)) {
    throw new ConnectError(`unexpected response content-type "${ct}" (HTTP ${status})`, Code.Unknown, headers);
  }
  return undefined;
}

/** Idle watchdog for heartbeats: fails the call when nothing arrives for `ms`. */
class Watchdog {
  private timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    private readonly ms: number,
    private readonly fire: () => void,
  ) {
    this.kick();
  }
  kick(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(this.fire, this.ms);
  }
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}


export function createWireTransport(options: TransportOptions, wire: Wire): Transport {
  const format = options.format ?? "binary";
  const text = format === "text";
  const readMaxBytes = options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const writeMaxBytes = options.writeMaxBytes ?? DEFAULT_READ_MAX_BYTES;
  const bidiStallMs = options.bidiStallMs ?? 3000;

  function headersFor(timeoutMs: number | undefined, header: HeadersInit | undefined): Headers {
    const h = requestHeader(true, timeoutMs, header, false);
    h.set("content-type", text ? "application/grpc-web-text" : "application/grpc-web+proto");
    if (text) h.set("accept", "application/grpc-web-text");
    if (!new Headers(header).has("x-user-agent")) h.set("x-user-agent", "weir-client/0.1");
    if (options.heartbeat) h.set(HEARTBEAT_HEADER, formatInterval(options.heartbeat.interval));
    return h;
  }

  function envelope<I extends DescMessage>(desc: I, msg: MessageShape<I>): Uint8Array {
    return envelopeMessage(desc, msg, writeMaxBytes);
  }

  function encodeBody(chunks: Uint8Array[]): Uint8Array | string {
    let len = 0;
    for (const c of chunks) len += c.length;
    const all = new Uint8Array(len);
    let o = 0;
    for (const c of chunks) {
      all.set(c, o);
      o += c.length;
    }
    return text ? encodeBase64(all) : all;
  }

  /** Reads the request stream to its end (buffered mode). */
  async function drain<I extends DescMessage>(
    desc: I,
    it: AsyncIterator<MessageShape<I>>,
    out: Uint8Array[],
    signal: AbortSignal,
    stallMs: number | undefined,
  ): Promise<void> {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stall =
        stallMs === undefined || out.length === 0
          ? undefined
          : new Promise<never>((_, reject) => {
              timer = setTimeout(
                () =>
                  reject(
                    new ConnectError(
                      `full-duplex bidi streaming is not available on this transport: the request stream is sent only when it ends ` +
                        `(no request-stream support here), and it did not end within ${stallMs} ms after its last message. ` +
                        `Finish sending before reading (half duplex), or use a WebTransport transport when it exists.`,
                      Code.Unimplemented,
                    ),
                  ),
                stallMs,
              );
            });
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      aborted.catch(() => {});
      try {
        const r = await Promise.race([it.next(), aborted, ...(stall ? [stall] : [])]);
        if (r.done === true) return;
        out.push(envelope(desc, r.value));
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    }
  }

  /**
   * A ReadableStream over the request messages. It remembers what it sent, for
   * a resend as one body should the request stream be refused, but only up to
   * RESEND_KEEP_BYTES (always the first message): a refusal (Chromium over
   * HTTP/1.1) comes before more than the first few messages are read, and a
   * long upload must not keep everything it sent until the response arrives.
   */
  function requestStream<I extends DescMessage>(desc: I, it: AsyncIterator<MessageShape<I>>) {
    let pending: Promise<unknown> = Promise.resolve();
    let sent: Uint8Array[] | undefined = [];
    let kept = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const p = it.next().then((r) => {
          if (r.done === true) {
            controller.close();
            return;
          }
          const env = envelope(desc, r.value);
          if (sent !== undefined && (sent.length === 0 || kept + env.length <= RESEND_KEEP_BYTES)) {
            sent.push(env);
            kept += env.length;
          } else {
            sent = undefined;
          }
          controller.enqueue(text ? new TextEncoder().encode(encodeBase64(env)) : env);
        });
        pending = p.catch(() => {});
        return p;
      },
    });
    return {
      stream,
      settled: () => pending,
      /** Everything sent so far, or undefined if that is more than was kept. */
      resendable: () => sent,
      forget: () => (sent = undefined),
    };
  }

  async function call<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O> | DescMethodStreaming<I, O>,
    url: string,
    reqHeader: Headers,
    signal: AbortSignal,
    input: AsyncIterable<MessageShape<I>>,
  ): Promise<CallParts<O>> {
    // Our own controller: aborted by the caller's signal, the heartbeat
    // watchdog, or the end of the call.
    const { ctl, release: finish } = callController(signal);

    let res: WireResponse;
    try {
      const it = input[Symbol.asyncIterator]();
      const kind = method.methodKind;
      if (kind === "unary" || kind === "server_streaming") {
        const r = await it.next();
        if (r.done === true) throw new ConnectError("missing request message", Code.Internal);
        res = await wire.send({ url, headers: reqHeader, body: encodeBody([envelope(method.input, r.value)]), signal: ctl.signal });
      } else if (wire.canStreamRequest?.(url) === true) {
        const rs = requestStream(method.input, it);
        try {
          res = await wire.send({ url, headers: reqHeader, body: rs.stream, signal: ctl.signal });
          rs.forget();
        } catch (e) {
          // A failure after more than RESEND_KEEP_BYTES went out is no refusal
          // but a network error: it fails the call and is not replayed.
          if (ctl.signal.aborted || rs.resendable() === undefined || wire.requestStreamFailed?.(url, e) !== true) throw e;
          // Request streams refused (e.g. HTTP/1.1): resend everything as one body.
          await rs.settled();
          const sent = rs.resendable();
          if (sent === undefined) throw e;
          await drain(method.input, it, sent, ctl.signal, kind === "bidi_streaming" ? bidiStallMs : undefined);
          res = await wire.send({ url, headers: reqHeader, body: encodeBody(sent), signal: ctl.signal });
        }
      } else {
        const chunks: Uint8Array[] = [];
        await drain(method.input, it, chunks, ctl.signal, kind === "bidi_streaming" ? bidiStallMs : undefined);
        res = await wire.send({ url, headers: reqHeader, body: encodeBody(chunks), signal: ctl.signal });
      }
    } catch (e) {
      const err = wireError(e, ctl.signal);
      finish();
      throw err;
    }

    const header = res.headers;
    const trailer = new Headers();
    let trailersOnly: Headers | undefined;
    try {
      trailersOnly = checkResponse(res.status, header);
    } catch (e) {
      res.cancel();
      finish();
      throw e;
    }
    if (trailersOnly !== undefined) {
      res.cancel();
      finish();
      trailersOnly.forEach((v, k) => trailer.append(k, v));
      return { header, trailer, message: (async function* () {})() };
    }

    let watchdog: Watchdog | undefined;
    const granted = header.get(HEARTBEAT_HEADER);
    if (options.heartbeat && granted !== null) {
      const t = parseTimeout(granted, Number.MAX_SAFE_INTEGER);
      if (t.error === undefined && t.timeoutMs !== undefined) {
        const ms = 2 * t.timeoutMs + (options.heartbeat.graceMs ?? 5000);
        watchdog = new Watchdog(ms, () =>
          ctl.abort(new ConnectError(`no heartbeat or message for ${ms} ms (granted interval ${granted}); the stream is dead`, Code.Unavailable)),
        );
      }
    }
    // Reading stops on abort even if the wire's read() would not notice.
    const { aborted, stopped } = watchAbort(ctl.signal);

    const parser = new FrameParser(readMaxBytes);
    const b64 = text ? new Base64Decoder() : undefined;
    let trailerData: Uint8Array | undefined;
    const message = frameMessages<MessageShape<O>>({
      async read() {
        let chunk: Uint8Array | null;
        try {
          chunk = await Promise.race([res.read(), aborted]);
        } catch (e) {
          throw wireError(e, ctl.signal);
        }
        if (chunk === null) return null;
        watchdog?.kick();
        return parser.push(b64 ? b64.push(chunk) : chunk);
      },
      decode(frame) {
        if (frame.flags === FLAG_DATA) {
          try {
            return fromBinary(method.output, frame.data);
          } catch (e) {
            throw new ConnectError(`failed to parse response message: ${String(e)}`, Code.Internal);
          }
        }
        if (frame.flags === FLAG_TRAILER) trailerData = frame.data;
        // FLAG_HEARTBEAT: skipped, it only kept the watchdog happy.
        return undefined;
      },
      end() {
        b64?.end();
        parser.end();
        if (trailerData === undefined) {
          throw new ConnectError("protocol error: response ended without a trailer (no grpc-status)", Code.Internal, header);
        }
        const t = trailerParse(trailerData);
        t.forEach((v, k) => trailer.append(k, v));
        validateTrailer(t, header);
      },
      check() {
        if (stopped()) throw wireError(undefined, ctl.signal);
      },
      close() {
        watchdog?.stop();
        res.cancel();
        finish();
      },
    });
    return { header, trailer, message };
  }

  return createShell({
    baseUrl: options.baseUrl,
    interceptors: options.interceptors,
    defaultTimeoutMs: options.defaultTimeoutMs,
    headersFor,
    call,
  });
}
