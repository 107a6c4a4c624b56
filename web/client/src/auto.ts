// The auto transport: WebTransport for the calls that need it (client
// streaming and bidi, optionally every call) where the browser has it and
// the server's session opens; fetch for everything else, and for those
// calls too when WebTransport cannot be used.

import type { DescMethodStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { createFetchTransport, type FetchTransportOptions } from "./fetch.js";
import { createWebTransportTransport, supportsWebTransport, type WebTransportTransport, type WebTransportTransportOptions } from "./webtransport.js";

export type TransportChoice = "webtransport" | "fetch";

export interface AutoTransportOptions extends FetchTransportOptions {
  /**
   * WebTransport settings (url, hashes, discovery). By default the discovery
   * document at `baseUrl` names the session. `false` never uses WebTransport.
   */
  webTransport?: Omit<WebTransportTransportOptions, "interceptors" | "readMaxBytes" | "writeMaxBytes" | "defaultTimeoutMs"> | false;
  /** Which calls go over WebTransport: `streaming` (client streaming and bidi, default) or `all`. */
  useWebTransportFor?: "streaming" | "all";
  /** After a session failed to open, use fetch for this long before trying again (default 30 s). */
  retryWebTransportAfterMs?: number;
  /** Told which transport each call takes (for logs and tests). */
  onSelect?(choice: TransportChoice, method: string, why?: string): void;
}

export interface AutoTransport extends Transport {
  /** The WebTransport transport behind it (undefined when disabled). */
  readonly webTransport: WebTransportTransport | undefined;
  readonly fetch: Transport;
}

export function createAutoTransport(options: AutoTransportOptions): AutoTransport {
  const fetchTransport = createFetchTransport(options);
  const shared = {
    interceptors: options.interceptors,
    readMaxBytes: options.readMaxBytes,
    writeMaxBytes: options.writeMaxBytes,
    defaultTimeoutMs: options.defaultTimeoutMs,
  };
  const wt =
    options.webTransport === false
      ? undefined
      : createWebTransportTransport({ baseUrl: options.baseUrl, fetch: options.fetch, ...shared, ...options.webTransport });
  const retryAfter = options.retryWebTransportAfterMs ?? 30_000;
  let failedAt = -Infinity;
  let failure = "";

  async function pick(method: DescMethodUnary | DescMethodStreaming, signal: AbortSignal | undefined): Promise<Transport> {
    const name = `${method.parent.typeName}/${method.name}`;
    const wanted = options.useWebTransportFor === "all" || method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    let why: string | undefined;
    if (!wanted) why = `${method.methodKind} call`;
    else if (wt === undefined) why = "WebTransport disabled";
    else if (!supportsWebTransport() && options.webTransport !== false && options.webTransport?.WebTransport === undefined) {
      why = "WebTransport is not available in this environment";
    } else if (Date.now() - failedAt < retryAfter) why = `WebTransport session failed recently: ${failure}`;
    else {
      try {
        await wt.connect(signal);
        options.onSelect?.("webtransport", name);
        return wt;
      } catch (e) {
        if (signal?.aborted === true) throw e;
        failedAt = Date.now();
        failure = e instanceof Error ? e.message : String(e);
        why = `WebTransport session failed: ${failure}`;
      }
    }
    options.onSelect?.("fetch", name, why);
    return fetchTransport;
  }

  return {
    webTransport: wt,
    fetch: fetchTransport,
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const t = await pick(method, signal);
      return t.unary(method, signal, timeoutMs, header, input, contextValues);
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const t = await pick(method, signal);
      return t.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  } satisfies AutoTransport;
}
