// The parity page: runs one call described by a CallSpec through one of
// weir's transports and reports what happened.

import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createFetchTransport, createXhrTransport, supportsRequestStreams } from "../src/index.js";
import { PayloadSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService, UnimplementedService } from "../../interop/src/gen/grpc/testing/test_pb.js";
import type { CallOutcome, CallSpec, RequestSpec, TransportSpec } from "./protocol.js";

function transport(t: TransportSpec): Transport {
  const opts = { baseUrl: t.baseUrl, format: t.format, heartbeat: t.heartbeat, bidiStallMs: 1000 };
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
    if (spec.countOnly !== true) sizes.push(size);
    const c = spec.cancel;
    if (c?.at === "afterMessages" && count === c.count) {
      if (c.delayMs) await new Promise((r) => setTimeout(r, c.delayMs));
      abort.abort();
    }
  };
  const reqs = spec.requests.map(request);
  if (spec.heapAt !== undefined) heap0 = heap();
  const client = createClient(TestService, transport(spec.transport));
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
          await createClient(UnimplementedService, transport(spec.transport)).unimplementedCall({}, opts);
          break;
        case "StreamingOutputCall":
          for await (const m of client.streamingOutputCall(reqs[0] ?? {}, opts)) await onMessage(m.payload?.body.length ?? -1);
          break;
        case "StreamingInputCall": {
          const r = await client.streamingInputCall(
            (async function* () {
              yield* reqs;
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
            yield* reqs;
            if (spec.keepRequestOpen === true) await new Promise(() => {});
          })();
          for await (const m of fn(input, opts)) await onMessage(m.payload?.body.length ?? -1);
          break;
        }
      }
    })();
    if (spec.cancel?.at === "immediately") abort.abort();
    await run;
    return { code: 0, message: "", sizes, count, header: record(header), trailer: record(trailer), headerAt, firstMessageAt, endAt: since(), heapGrowth };
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
    };
  }
}

window.weirParity = { call, hasRequestStreams: supportsRequestStreams };
