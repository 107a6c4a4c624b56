// The page of the browser benchmark: one long server stream decoded by each client library.
// Bundled by esbuild; the harness calls window.bench.run(...) through playwright.

import { GrpcWebClientBase, MethodDescriptor, MethodType } from "grpc-web";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createFetchTransport, createWebTransportTransport, createXhrTransport } from "@weir/client";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";
import {
  StreamingOutputCallRequestSchema,
  StreamingOutputCallResponseSchema,
  type StreamingOutputCallRequest,
  type StreamingOutputCallResponse,
} from "../../interop/src/gen/grpc/testing/messages_pb.js";

export type Contender = "grpc-web-text" | "connect-web" | "weir-fetch" | "weir-xhr" | "weir-webtransport";

/** Where the server is: its gRPC-Web base URL, and its WebTransport session (if it serves one). */
export interface Target {
  baseUrl: string;
  webtransport?: { url: string; sha256: string[] };
}

export interface Result {
  ok: boolean;
  error?: string;
  messages: number;
  ms: number;
  heapBefore: number;
  heapPeak: number;
  heapAfter: number;
}

/** The contenders that take a fetch function: they can decode a body held in memory. */
export type Decoder = "connect-web" | "weir-fetch";

declare global {
  interface Window {
    bench: {
      run(contender: Contender, target: Target, count: number, size: number): Promise<Result>;
      /**
       * Decode only: `rounds` times, one server stream of `count` messages of `size` bytes
       * whose response body is held in memory (a fetch that answers from it in 64 KiB chunks):
       * the client's own work, without server, network or request encoding. Milliseconds per round.
       */
      decode(contender: Decoder, count: number, size: number, rounds: number): Promise<number[]>;
    };
  }
  interface Performance {
    memory?: { usedJSHeapSize: number };
  }
}

const heap = () => performance.memory?.usedJSHeapSize ?? Number.NaN;

function request(count: number, size: number): StreamingOutputCallRequest {
  return create(StreamingOutputCallRequestSchema, {
    responseParameters: Array.from({ length: count }, () => ({ size, intervalUs: 0 })),
  });
}

class Unused {}
const streamingOutput = new MethodDescriptor<StreamingOutputCallRequest, StreamingOutputCallResponse>(
  "/grpc.testing.TestService/StreamingOutputCall",
  MethodType.SERVER_STREAMING,
  Unused as unknown as new () => StreamingOutputCallRequest,
  Unused as unknown as new () => StreamingOutputCallResponse,
  (req: StreamingOutputCallRequest) => toBinary(StreamingOutputCallRequestSchema, req),
  (bytes: Uint8Array) => fromBinary(StreamingOutputCallResponseSchema, bytes),
);

async function viaGrpcWeb(baseUrl: string, req: StreamingOutputCallRequest, onMessage: () => void): Promise<void> {
  const client = new GrpcWebClientBase({ format: "text" });
  await new Promise<void>((resolve, reject) => {
    const stream = client.serverStreaming(`${baseUrl}/grpc.testing.TestService/StreamingOutputCall`, req, {}, streamingOutput);
    stream.on("data", onMessage);
    stream.on("error", (e) => reject(new Error(`grpc-web: ${e.code} ${e.message}`)));
    stream.on("end", () => resolve());
  });
}

async function viaConnect(transport: Transport, req: StreamingOutputCallRequest, onMessage: () => void): Promise<void> {
  const client = createClient(TestService, transport);
  for await (const _ of client.streamingOutputCall(req)) onMessage();
}

function transportFor(contender: Contender, target: Target): Transport {
  const { baseUrl, webtransport } = target;
  switch (contender) {
    case "connect-web":
      return createGrpcWebTransport({ baseUrl, useBinaryFormat: true });
    case "weir-fetch":
      return createFetchTransport({ baseUrl, format: "binary" });
    case "weir-xhr":
      return createXhrTransport({ baseUrl, format: "binary" });
    case "weir-webtransport":
      if (webtransport === undefined) throw new Error("the server serves no WebTransport");
      return createWebTransportTransport({
        url: webtransport.url,
        serverCertificateHashes: webtransport.sha256.map((value) => ({ algorithm: "sha-256", value })),
      });
    default:
      throw new Error(`no transport for ${contender}`);
  }
}

/** The gRPC-Web response body of a stream of `count` messages of `size` bytes, OK trailer. */
function responseBody(count: number, size: number): Uint8Array {
  const msg = toBinary(StreamingOutputCallResponseSchema, create(StreamingOutputCallResponseSchema, { payload: { body: new Uint8Array(size) } }));
  const trailer = new TextEncoder().encode("grpc-status: 0\r\n");
  const body = new Uint8Array(count * (5 + msg.length) + 5 + trailer.length);
  const view = new DataView(body.buffer);
  let o = 0;
  for (let i = 0; i < count; i++) {
    view.setUint32(o + 1, msg.length);
    body.set(msg, o + 5);
    o += 5 + msg.length;
  }
  body[o] = 0x80;
  view.setUint32(o + 1, trailer.length);
  body.set(trailer, o + 5);
  return body;
}

function memoryFetch(body: Uint8Array): typeof fetch {
  return async () =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < body.length; i += 65536) c.enqueue(body.slice(i, i + 65536));
          c.close();
        },
      }),
      { status: 200, headers: { "content-type": "application/grpc-web+proto" } },
    );
}

window.bench = {
  async decode(contender, count, size, rounds) {
    const fetch = memoryFetch(responseBody(count, size));
    const baseUrl = "http://memory.invalid";
    const transport =
      contender === "connect-web" ? createGrpcWebTransport({ baseUrl, useBinaryFormat: true, fetch }) : createFetchTransport({ baseUrl, format: "binary", fetch });
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let messages = 0;
      const start = performance.now();
      await viaConnect(transport, create(StreamingOutputCallRequestSchema), () => void messages++);
      times.push(performance.now() - start);
      if (messages !== count) throw new Error(`${contender}: ${messages} of ${count} messages`);
    }
    return times;
  },

  async run(contender, target, count, size) {
    const req = request(count, size);
    let messages = 0;
    const heapBefore = heap();
    let heapPeak = heapBefore;
    const onMessage = () => {
      messages += 1;
      if (messages % 1000 === 0) heapPeak = Math.max(heapPeak, heap());
    };
    const start = performance.now();
    try {
      if (contender === "grpc-web-text") await viaGrpcWeb(target.baseUrl, req, onMessage);
      else await viaConnect(transportFor(contender, target), req, onMessage);
    } catch (e) {
      return { ok: false, error: String(e), messages, ms: performance.now() - start, heapBefore, heapPeak, heapAfter: heap() };
    }
    const ms = performance.now() - start;
    heapPeak = Math.max(heapPeak, heap());
    return { ok: messages === count, messages, ms, heapBefore, heapPeak, heapAfter: heap() };
  },
};
