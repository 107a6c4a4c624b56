// A minimal gRPC-Web (binary) client over node:http (HTTP/1.1) that parses
// the response frames itself: it counts weir heartbeat frames (flags 0x40,
// docs/protocol/heartbeat.md) instead of choking on them, and lets a test set
// any request header, hop-by-hop ones included.

import * as http from "node:http";

export interface RawCallOptions {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** e.g. /grpc.testing.TestService/StreamingOutputCall */
  path: string;
  /** The request message, serialized. */
  message: Uint8Array;
  headers?: Record<string, string>;
  /** Hang guard: the request is destroyed after this long. */
  timeoutMs: number;
}

export interface RawCallResult {
  httpStatus: number | undefined;
  headers: http.IncomingHttpHeaders;
  messages: Buffer[];
  heartbeats: number;
  /** Trailer frame fields, lower-case keys (empty when there was none). */
  trailers: Record<string, string>;
  /** grpc-status from the trailer frame, else from the headers (trailers-only). */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  /** Set when the response did not end cleanly (socket closed, bad framing, timeout). */
  error: string | undefined;
}

export function frame(flags: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

function parseTrailerBlock(block: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of block.toString("latin1").split("\r\n")) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

/** Never rejects: transport failures are reported in `error`. */
export function rawGrpcWebCall(opts: RawCallOptions): Promise<RawCallResult> {
  const result: RawCallResult = {
    httpStatus: undefined,
    headers: {},
    messages: [],
    heartbeats: 0,
    trailers: {},
    grpcStatus: undefined,
    grpcMessage: undefined,
    error: undefined,
  };
  const body = frame(0, opts.message);
  return new Promise((resolve) => {
    let settled = false;
    let sawTrailer = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error !== undefined) result.error = error;
      else if (!sawTrailer && result.headers["grpc-status"] === undefined) result.error = "response ended without a trailer";
      const status = result.trailers["grpc-status"] ?? (result.headers["grpc-status"] as string | undefined);
      result.grpcStatus = status === undefined ? undefined : Number(status);
      const message = result.trailers["grpc-message"] ?? (result.headers["grpc-message"] as string | undefined);
      result.grpcMessage = message === undefined ? undefined : decodeURIComponent(message);
      resolve(result);
    };
    const u = new URL(opts.path, opts.url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: "POST",
        agent: false,
        headers: {
          "content-type": "application/grpc-web+proto",
          "x-grpc-web": "1",
          "content-length": String(body.length),
          ...opts.headers,
        },
      },
      (res) => {
        result.httpStatus = res.statusCode;
        result.headers = res.headers;
        let buf = Buffer.alloc(0);
        res.on("data", (chunk: Buffer) => {
          buf = Buffer.concat([buf, chunk]);
          while (buf.length >= 5) {
            const flags = buf[0]!;
            const len = buf.readUInt32BE(1);
            if (buf.length < 5 + len) break;
            const payload = buf.subarray(5, 5 + len);
            buf = buf.subarray(5 + len);
            if (sawTrailer) {
              finish("a frame after the trailer frame");
              req.destroy();
              return;
            }
            if (flags & 0x80) {
              sawTrailer = true;
              result.trailers = parseTrailerBlock(payload);
            } else if (flags === 0x40) {
              if (len !== 0) {
                finish(`heartbeat frame with length ${len}`);
                req.destroy();
                return;
              }
              result.heartbeats++;
            } else {
              result.messages.push(Buffer.from(payload));
            }
          }
        });
        res.on("end", () => finish(buf.length > 0 ? `${buf.length} bytes of an incomplete frame at the end` : undefined));
        res.on("aborted", () => finish("response aborted"));
        res.on("error", (e) => finish(`response error: ${e.message}`));
        res.on("close", () => finish(res.complete ? undefined : "connection closed before the response was complete"));
      },
    );
    const timer = setTimeout(() => {
      finish(`no complete response within ${opts.timeoutMs} ms`);
      req.destroy();
    }, opts.timeoutMs);
    req.on("error", (e) => finish(`request error: ${e.message}`));
    req.end(body);
  });
}
