// Fetch transport: the response body is read chunk by chunk from
// `response.body`, so memory stays bounded by the largest message. Client
// streams go out as fetch request streams where the browser and the
// connection allow it (HTTP/2+), else as one buffered body.

import type { Transport } from "@connectrpc/connect";
import { createWireTransport, type TransportOptions, type Wire, type WireResponse } from "./core.js";

export interface FetchTransportOptions extends TransportOptions {
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch;
  /**
   * Send client streams as fetch request streams: `auto` (default) when the
   * runtime supports them, falling back to a buffered body for origins that
   * refuse them (HTTP/1.1); `never` always buffers.
   */
  requestStreams?: "auto" | "never";
  /** Passed to fetch (default "same-origin"). */
  credentials?: RequestCredentials;
}

let detected: boolean | undefined;
/** Whether this runtime can send a ReadableStream as a fetch request body. */
export function supportsRequestStreams(): boolean {
  if (detected !== undefined) return detected;
  try {
    let duplexAccessed = false;
    const hasContentType = new Request("http://localhost/", {
      body: new ReadableStream(),
      method: "POST",
      get duplex() {
        duplexAccessed = true;
        return "half";
      },
    } as RequestInit).headers.has("content-type");
    detected = duplexAccessed && !hasContentType;
  } catch {
    detected = false;
  }
  return detected;
}

/**
 * Origins that refused a request stream (HTTP/1.1), for the life of the page
 * or worker: every fetch transport shares it, so a page that makes a new
 * transport per call pays for the failed attempt once per origin, not once
 * per call.
 */
const refused = new Set<string>();

function fetchWire(opts: FetchTransportOptions): Wire {
  const originOf = (url: string) => new URL(url, globalThis.location?.href).origin;
  return {
    canStreamRequest(url) {
      return opts.requestStreams !== "never" && supportsRequestStreams() && !refused.has(originOf(url));
    },
    requestStreamFailed(url, err) {
      // Chromium rejects streamed uploads over HTTP/1.1 with a TypeError
      // (net::ERR_H2_OR_QUIC_REQUIRED) before any byte is sent.
      if (!(err instanceof TypeError)) return false;
      refused.add(originOf(url));
      return true;
    },
    async send(req) {
      const f = opts.fetch ?? globalThis.fetch;
      const init: RequestInit & { duplex?: "half" } = {
        method: "POST",
        headers: req.headers,
        body: req.body as BodyInit,
        signal: req.signal,
        mode: "cors",
        credentials: opts.credentials ?? "same-origin",
        redirect: "error",
      };
      if (req.body instanceof ReadableStream) init.duplex = "half";
      const response = await f(req.url, init);
      const reader = response.body?.getReader();
      let done = reader === undefined;
      const res: WireResponse = {
        status: response.status,
        headers: response.headers,
        async read() {
          if (done || reader === undefined) return null;
          const r = await reader.read();
          if (r.done) {
            done = true;
            return null;
          }
          return r.value;
        },
        cancel() {
          if (done) return;
          done = true;
          reader?.cancel().catch(() => {});
        },
      };
      return res;
    },
  };
}

/** A Connect-ES Transport speaking gRPC-Web over fetch. */
export function createFetchTransport(options: FetchTransportOptions): Transport {
  return createWireTransport(options, fetchWire(options));
}
