// XHR transport, for runtimes without fetch response streams. Bytes are
// delivered on every `progress` event: binary mode reads `responseText` with
// the x-user-defined charset (one char per byte), text mode reads the base64
// text. Inherent gap: the XHR object keeps the whole response text until the
// call ends (see README for the measured cost).

import type { Transport } from "@connectrpc/connect";
import { createWireTransport, type TransportOptions, type Wire, type WireResponse } from "./core.js";

export interface XhrTransportOptions extends TransportOptions {
  /** Sets XMLHttpRequest.withCredentials. */
  withCredentials?: boolean;
  /** XHR constructor to use (default globalThis.XMLHttpRequest). */
  XMLHttpRequest?: typeof globalThis.XMLHttpRequest;
}

function parseHeaders(raw: string): Headers {
  const h = new Headers();
  for (const line of raw.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0) h.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return h;
}

function xhrWire(opts: XhrTransportOptions): Wire {
  return {
    send(req) {
      const X = opts.XMLHttpRequest ?? globalThis.XMLHttpRequest;
      const xhr = new X();
      const binary = !(typeof req.body === "string");
      let offset = 0;
      const chunks: Uint8Array[] = [];
      let ended = false;
      let failure: unknown;
      let wake: (() => void) | undefined;
      const notify = () => {
        const w = wake;
        wake = undefined;
        w?.();
      };
      const take = () => {
        const t = xhr.responseText;
        if (t.length <= offset) return;
        const bytes = new Uint8Array(t.length - offset);
        for (let i = 0; i < bytes.length; i++) bytes[i] = t.charCodeAt(offset + i) & 0xff;
        offset = t.length;
        chunks.push(bytes);
        notify();
      };
      return new Promise<WireResponse>((resolve, reject) => {
        let headersSeen = false;
        const fail = (err: unknown) => {
          if (!headersSeen) reject(err);
          failure ??= err;
          ended = true;
          notify();
        };
        const onAbort = () => {
          xhr.abort();
          fail(req.signal.reason);
        };
        if (req.signal.aborted) {
          reject(req.signal.reason);
          return;
        }
        req.signal.addEventListener("abort", onAbort, { once: true });
        xhr.open("POST", req.url, true);
        xhr.withCredentials = opts.withCredentials ?? false;
        xhr.responseType = "text";
        // Binary bodies: one UTF-16 unit per byte, no decoding.
        xhr.overrideMimeType("text/plain; charset=x-user-defined");
        req.headers.forEach((v, k) => xhr.setRequestHeader(k, v));
        xhr.onreadystatechange = () => {
          if (xhr.readyState === xhr.HEADERS_RECEIVED && !headersSeen && xhr.status !== 0) {
            headersSeen = true;
            resolve({
              status: xhr.status,
              headers: parseHeaders(xhr.getAllResponseHeaders()),
              async read() {
                for (;;) {
                  const c = chunks.shift();
                  if (c !== undefined) return c;
                  if (failure !== undefined) throw failure;
                  if (ended) return null;
                  await new Promise<void>((r) => (wake = r));
                }
              },
              cancel() {
                req.signal.removeEventListener("abort", onAbort);
                if (!ended) {
                  ended = true;
                  xhr.abort();
                }
                chunks.length = 0;
              },
            });
          }
        };
        xhr.onprogress = take;
        xhr.onload = () => {
          take();
          ended = true;
          req.signal.removeEventListener("abort", onAbort);
          if (!headersSeen) {
            headersSeen = true;
            reject(new TypeError(`XHR finished without headers (status ${xhr.status})`));
          }
          notify();
        };
        xhr.onerror = () => fail(new TypeError(`XHR network error (status ${xhr.status})`));
        xhr.ontimeout = () => fail(new TypeError("XHR timed out"));
        xhr.send(binary ? (req.body as Uint8Array<ArrayBuffer>) : (req.body as string));
      });
    },
  };
}

/** A Connect-ES Transport speaking gRPC-Web over XMLHttpRequest. */
export function createXhrTransport(options: XhrTransportOptions): Transport {
  return createWireTransport(options, xhrWire(options));
}
