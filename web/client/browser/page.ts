// The parity page: runs one call described by a CallSpec through one of
// weir's transports and reports what happened.

import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createAutoTransport,
  createFetchTransport,
  createWebTransportTransport,
  createXhrTransport,
  type SessionCloseInfo,
  supportsRequestStreams,
  supportsWebTransport,
} from "../src/index.js";
import { PayloadSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService, UnimplementedService } from "../../interop/src/gen/grpc/testing/test_pb.js";
import type { CallOutcome, CallSpec, FetchRecord, RequestSpec, SessionClosed, TransportSpec } from "./protocol.js";

// Count the sessions the page opens (the transports share one per endpoint),
// and record how each ended, as the browser says (`closed`).
let sessions = 0;
const nativeCloses: SessionClosed[] = [];
const reportedCloses: SessionClosed[] = [];
const NativeWebTransport = globalThis.WebTransport;
if (typeof NativeWebTransport === "function") {
  globalThis.WebTransport = class extends NativeWebTransport {
    constructor(url: string | URL, options?: WebTransportOptions) {
      super(url, options);
      sessions++;
      this.closed.then(
        (info) => nativeCloses.push({ by: "resolved", closeCode: info.closeCode, reason: info.reason, at: Date.now() }),
        (e) => nativeCloses.push({ by: "rejected", error: String(e), at: Date.now() }),
      );
    }
  };
}

function wtOptions(t: TransportSpec) {
  return {
    baseUrl: t.baseUrl,
    url: t.url,
    serverCertificateHashes: t.certificateHashes?.map((value) => ({ algorithm: "sha-256", value })),
    connectTimeoutMs: 5000,
    onSessionClose,
  };
}

// One function for every transport (the page makes one per call): a session calls it once.
const onSessionClose = (i: SessionCloseInfo) =>
  reportedCloses.push({ by: i.by, closeCode: i.closeCode, reason: i.reason, error: i.error === undefined ? undefined : String(i.error), at: Date.now() });

/** A fetch that records, per call, whether each request went out as a stream or one body. */
function spyFetch(log: FetchRecord[]): typeof fetch {
  return async (input, init) => {
    const rec: FetchRecord = { body: init?.body instanceof ReadableStream ? "stream" : "buffered", outcome: "response" };
    log.push(rec);
    try {
      return await fetch(input, init);
    } catch (e) {
      rec.outcome = "rejected";
      rec.error = `${e instanceof Error ? e.name : "?"}: ${e instanceof Error ? e.message : String(e)}`;
      throw e;
    }
  };
}

// A new transport per call, as a page that makes one per click: what a
// transport learns about an origin must outlive it.
function transport(t: TransportSpec, choices?: string[], fetches: FetchRecord[] = []): Transport {
  const opts = { baseUrl: t.baseUrl, format: t.format, heartbeat: t.heartbeat, bidiStallMs: 1000, fetch: spyFetch(fetches) };
  if (t.kind === "webtransport") return createWebTransportTransport(wtOptions(t));
  if (t.kind === "auto") {
    return createAutoTransport({
      ...opts,
      webTransport: wtOptions(t),
      useWebTransportFor: t.all === true ? "all" : "streaming",
      onSelect: (choice) => choices?.push(choice),
    });
  }
  return t.kind === "fetch" ? createFetchTransport(opts) : createXhrTransport(opts);
}

function request(r: RequestSpec) {
  return {
    responseSize: r.responseSize ?? 0,
    payload: create(PayloadSchema, { body: new Uint8Array(r.payloadSize ?? 0) }),
    responseStatus: r.responseStatus,
    responseParameters: r.responseParameters ?? [],
  } as never;
}

function record(h: Headers | undefined): Record<string, string> | null {
  if (h === undefined) return null;
  const out: Record<string, string> = {};
  h.forEach((v, k) => (out[k] = v));
  return out;
}

const gc = (globalThis as { gc?: () => void }).gc;
const heap = () => {
  gc?.();
  return (performance as unknown as { memory?: { usedJSHeapSize: number } }).memory?.usedJSHeapSize ?? 0;
};

async function call(spec: CallSpec): Promise<CallOutcome> {
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);
  const abort = new AbortController();
  let header: Headers | undefined;
  let trailer: Headers | undefined;
  let headerAt: number | null = null;
  let firstMessageAt: number | null = null;
  const sizes: number[] = [];
  let count = 0;
  let heap0 = 0;
  let heapGrowth: number | undefined;
  const choices: string[] = [];
  const fetches: FetchRecord[] = [];
  let abortedAt: number | undefined;
  const cancel = () => {
    abortedAt = Date.now();
    abort.abort();
  };
  let answered = () => {};
  const opts = {
    signal: abort.signal,
    timeoutMs: spec.timeoutMs,
    headers: spec.headers,
    onHeader: (h: Headers) => {
      header = h;
      headerAt = since();
    },
    onTrailer: (h: Headers) => (trailer = h),
  };
  const onMessage = async (size: number) => {
    firstMessageAt ??= since();
    if (spec.heapAt !== undefined && count === spec.heapAt) heapGrowth = heap() - heap0;
    count++;
    answered();
    if (spec.countOnly !== true) sizes.push(size);
    const c = spec.cancel;
    if (c?.at === "afterMessages" && count === c.count) {
      if (c.delayMs) await new Promise((r) => setTimeout(r, c.delayMs));
      cancel();
    }
  };
  const reqs = spec.requests.map(request);
  if (spec.heapAt !== undefined) heap0 = heap();
  const client = createClient(TestService, transport(spec.transport, choices, fetches));
  try {
    const run = (async () => {
      switch (spec.method) {
        case "EmptyCall":
          await client.emptyCall({}, opts);
          await onMessage(-1);
          break;
        case "UnaryCall": {
          const r = await client.unaryCall(reqs[0] ?? {}, opts);
          await onMessage(r.payload?.body.length ?? -1);
          break;
        }
        case "UnimplementedCall":
          await client.unimplementedCall({}, opts);
          break;
        case "UnimplementedService":
          await createClient(UnimplementedService, transport(spec.transport, choices)).unimplementedCall({}, opts);
          break;
        case "StreamingOutputCall":
          for await (const m of client.streamingOutputCall(reqs[0] ?? {}, opts)) await onMessage(m.payload?.body.length ?? -1);
          break;
        case "StreamingInputCall": {
          const r = await client.streamingInputCall(
            (async function* () {
              yield* reqs;
              if (spec.keepRequestOpen === true) await new Promise(() => {});
            })(),
            opts,
          );
          await onMessage(r.aggregatedPayloadSize);
          break;
        }
        case "HalfDuplexCall":
        case "FullDuplexCall": {
          const fn = spec.method === "HalfDuplexCall" ? client.halfDuplexCall : client.fullDuplexCall;
          const input = (async function* () {
            for (const r of reqs) {
              const got = new Promise<void>((resolve) => (answered = resolve));
              yield r;
              if (spec.pingPong === true) await got;
            }
            if (spec.keepRequestOpen === true) await new Promise(() => {});
          })();
          for await (const m of fn(input, opts)) await onMessage(m.payload?.body.length ?? -1);
          break;
        }
      }
    })();
    if (spec.cancel?.at === "immediately") cancel();
    if (spec.cancel?.at === "afterMs") setTimeout(cancel, spec.cancel.ms);
    await run;
    return { code: 0, message: "", sizes, count, header: record(header), trailer: record(trailer), headerAt, firstMessageAt, endAt: since(), heapGrowth, choices, fetches, abortedAt };
  } catch (e) {
    const err = ConnectError.from(e);
    const meta = record(err.metadata);
    return {
      code: err.code,
      message: err.rawMessage,
      sizes,
      count,
      header: record(header) ?? meta,
      trailer: record(trailer) ?? meta,
      headerAt,
      firstMessageAt,
      endAt: since(),
      heapGrowth,
      choices,
      fetches,
      abortedAt,
    };
  }
}

window.weirParity = {
  call,
  hasRequestStreams: supportsRequestStreams,
  callMany: (spec, n) => Promise.all(Array.from({ length: n }, () => call(spec))),
  sessionsOpened: () => sessions,
  closeSession: (t) => createWebTransportTransport(wtOptions(t)).close("closed by the test page"),
  hasWebTransport: supportsWebTransport,
  sessionsClosed: () => ({ native: nativeCloses, reported: reportedCloses }),
};
