// The upload page: client-streaming and half-duplex calls over the fetch
// transport whose request stream the test drives message by message
// (upload-protocol.ts). A spy around fetch records whether each request went
// out as a request stream or as one buffered body.

import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createFetchTransport, supportsRequestStreams } from "../src/index.js";
import { PayloadSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";
import type { RequestSpec } from "./protocol.js";
import type { FetchRecord, UploadOutcome, UploadSpec, UploadState } from "./upload-protocol.js";

const TEST_ID = "x-weir-test-id";
const fetchLog = new Map<string, FetchRecord[]>();

async function spyFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const id = new Headers(init?.headers).get(TEST_ID) ?? "";
  const rec: FetchRecord = { body: init?.body instanceof ReadableStream ? "stream" : "buffered", outcome: "response" };
  fetchLog.set(id, [...(fetchLog.get(id) ?? []), rec]);
  try {
    return await fetch(input, init);
  } catch (e) {
    rec.outcome = "rejected";
    rec.error = `${e instanceof Error ? e.name : "?"}: ${e instanceof Error ? e.message : String(e)}`;
    throw e;
  }
}

// One transport per base URL and format, so an origin that refused request
// streams is remembered across calls, as in an application.
const transports = new Map<string, Transport>();
function transport(baseUrl: string, format: "binary" | "text"): Transport {
  const key = `${format} ${baseUrl}`;
  let t = transports.get(key);
  if (t === undefined) {
    t = createFetchTransport({ baseUrl, format, fetch: spyFetch });
    transports.set(key, t);
  }
  return t;
}

function request(r: RequestSpec) {
  return {
    responseSize: r.responseSize ?? 0,
    payload: create(PayloadSchema, { body: new Uint8Array(r.payloadSize ?? 0) }),
    responseParameters: r.responseParameters ?? [],
  } as never;
}

interface Call {
  state: UploadState;
  abort: AbortController;
  permits: number;
  waiter: (() => void) | undefined;
  result: Promise<UploadOutcome>;
}
const calls: Call[] = [];

function start(spec: UploadSpec): number {
  const t0 = performance.now();
  const since = () => Math.round((performance.now() - t0) * 10) / 10;
  const state: UploadState = { sent: 0, requestEnded: false, finished: false, events: [] };
  const log = (what: string) => state.events.push({ what, at: since() });
  const c: Call = { state, abort: new AbortController(), permits: 0, waiter: undefined, result: undefined as never };
  const gate = () =>
    new Promise<void>((ok) => {
      if (c.permits > 0) {
        c.permits--;
        ok();
      } else {
        c.waiter = () => {
          c.waiter = undefined;
          ok();
        };
      }
    });
  const reqs = spec.requests.map(request);
  async function* input() {
    for (const [i, r] of reqs.entries()) {
      if (i > 0 && spec.gated) await gate();
      log(`yield ${i}`);
      state.sent++;
      yield r;
    }
    state.requestEnded = true;
    log("requestEnd");
  }
  const client = createClient(TestService, transport(spec.baseUrl, spec.format ?? "binary"));
  const opts = { signal: c.abort.signal, headers: { [TEST_ID]: spec.id }, timeoutMs: 20_000 };
  const sizes: number[] = [];
  c.result = (async (): Promise<UploadOutcome> => {
    let code = 0;
    let message = "";
    try {
      if (spec.method === "StreamingInputCall") {
        const r = await client.streamingInputCall(input(), opts);
        log("answer 0");
        sizes.push(r.aggregatedPayloadSize);
      } else {
        for await (const m of client.halfDuplexCall(input(), opts)) {
          log(`answer ${sizes.length}`);
          sizes.push(m.payload?.body.length ?? -1);
        }
      }
    } catch (e) {
      const err = ConnectError.from(e);
      code = err.code;
      message = err.rawMessage;
    }
    log("end");
    state.finished = true;
    return { ...state, code, message, sizes, fetches: fetchLog.get(spec.id) ?? [] };
  })();
  calls.push(c);
  return calls.length - 1;
}

function get(handle: number): Call {
  const c = calls[handle];
  if (c === undefined) throw new Error(`no call ${handle}`);
  return c;
}

window.weirUpload = {
  supportsRequestStreams,
  start,
  release(handle) {
    const c = get(handle);
    if (c.waiter !== undefined) c.waiter();
    else c.permits++;
  },
  abort: (handle) => get(handle).abort.abort(),
  state: (handle) => structuredClone(get(handle).state),
  result: (handle) => get(handle).result,
};
