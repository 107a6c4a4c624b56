// Bad input from a server: a small Node http server sends crafted gRPC-Web
// bodies, and the fetch transport (Node's fetch) must end every call with a
// clear ConnectError - never hang, never leak an unhandled rejection.

import assert from "node:assert/strict";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { encodeBase64 } from "../src/base64.js";
import { createFetchTransport } from "../src/index.js";
import { StreamingOutputCallResponseSchema } from "../../interop/src/gen/grpc/testing/messages_pb.js";
import { TestService } from "../../interop/src/gen/grpc/testing/test_pb.js";

const enc = new TextEncoder();
const frame = (flags: number, data: Uint8Array) => Buffer.from(encodeEnvelope(flags, data));
const trailer = (s: string) => frame(0x80, enc.encode(s));
const OK = trailer("grpc-status: 0\r\n");
const msg = (size: number) =>
  frame(0, toBinary(StreamingOutputCallResponseSchema, create(StreamingOutputCallResponseSchema, { payload: { body: new Uint8Array(size) } })));
const GW = { "content-type": "application/grpc-web+proto" };

type Script = (req: http.IncomingMessage, res: http.ServerResponse) => void;
const scripts: Record<string, Script> = {
  ok: (_q, r) => r.writeHead(200, GW).end(Buffer.concat([msg(3), OK])),
  garbage: (_q, r) => r.writeHead(200, GW).end(Buffer.from("this is not a grpc-web body")),
  "trailer-first": (_q, r) => r.writeHead(200, GW).end(Buffer.concat([OK, msg(3)])),
  "second-trailer": (_q, r) => r.writeHead(200, GW).end(Buffer.concat([msg(3), OK, OK])),
  truncated: (_q, r) => r.writeHead(200, GW).end(msg(100).subarray(0, 50)),
  "no-trailer": (_q, r) => r.writeHead(200, GW).end(msg(3)),
  "bad-base64": (_q, r) => r.writeHead(200, { "content-type": "application/grpc-web-text" }).end(encodeBase64(msg(3)) + "!!!!"),
  "text-ok": (_q, r) =>
    r.writeHead(200, { "content-type": "application/grpc-web-text" }).end([msg(3), msg(4), OK].map((b) => encodeBase64(b)).join("")),
  // Announces a 2 GiB message and then keeps the connection open.
  oversize: (_q, r) => {
    r.writeHead(200, GW);
    r.write(Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]));
  },
  "http-503": (_q, r) => r.writeHead(503, { "content-type": "text/plain" }).end("busy"),
  "http-404": (_q, r) => r.writeHead(404).end(),
  html: (_q, r) => r.writeHead(200, { "content-type": "text/html" }).end("<p>hi</p>"),
  "trailers-only": (_q, r) => r.writeHead(200, { ...GW, "grpc-status": "9", "grpc-message": "not%20now" }).end(),
  reset: (q, r) => {
    r.writeHead(200, GW);
    r.write(msg(3), () => setTimeout(() => q.socket.destroy(), 20));
  },
  // Grants heartbeats, sends one message, then goes silent.
  silent: (_q, r) => {
    r.writeHead(200, { ...GW, "weir-heartbeat": "100m" });
    r.write(Buffer.concat([msg(1), Buffer.from([0x40, 0, 0, 0, 0])]));
  },
  // Counts the request frames it received and answers with one message.
  count: (q, r) => {
    const parts: Buffer[] = [];
    q.on("data", (c: Buffer) => parts.push(c));
    q.on("end", () => {
      const body = Buffer.concat(parts);
      let n = 0;
      for (let i = 0; i + 5 <= body.length; i += 5 + body.readUInt32BE(i + 1)) n++;
      r.writeHead(200, { ...GW, "x-chunked": String(q.headers["transfer-encoding"] === "chunked") });
      r.end(Buffer.concat([frame(0, Buffer.from([0x08, n])), OK]));
    });
  },
};

let server: http.Server;
let base = "";
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

before(async () => {
  process.on("unhandledRejection", onUnhandled);
  server = http.createServer((req, res) => {
    const name = req.headers["x-script"];
    const s = typeof name === "string" ? scripts[name] : undefined;
    if (s === undefined) res.writeHead(500).end();
    else s(req, res);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((ok) => server.close(ok));
  process.off("unhandledRejection", onUnhandled);
});

async function outcome(script: string, transport?: Transport): Promise<{ sizes: number[]; code?: Code; message?: string }> {
  const client = createClient(TestService, transport ?? createFetchTransport({ baseUrl: base, readMaxBytes: 1 << 20 }));
  const sizes: number[] = [];
  try {
    for await (const m of client.streamingOutputCall({}, { headers: { "x-script": script }, timeoutMs: 10_000 })) {
      sizes.push(m.payload?.body.length ?? -1);
    }
    return { sizes };
  } catch (e) {
    const err = ConnectError.from(e);
    return { sizes, code: err.code, message: err.message };
  }
}

describe("crafted server responses (fetch transport in Node)", () => {
  const expect: [string, Code | undefined, RegExp?][] = [
    ["ok", undefined],
    ["garbage", Code.Internal, /flags|size/],
    ["trailer-first", Code.Internal, /after the trailer/],
    ["second-trailer", Code.Internal, /after the trailer/],
    ["truncated", Code.Internal, /ended inside a frame/],
    ["no-trailer", Code.Internal, /without a trailer/],
    ["oversize", Code.ResourceExhausted, /readMaxBytes/],
    ["http-503", Code.Unavailable],
    ["http-404", Code.Unimplemented],
    ["html", Code.Unknown, /content-type/],
    ["trailers-only", Code.FailedPrecondition, /not now/],
    ["reset", Code.Unavailable],
  ];
  for (const [script, code, re] of expect) {
    test(`${script} → ${code === undefined ? "OK" : Code[code]}`, { timeout: 5000 }, async () => {
      const out = await outcome(script);
      assert.equal(out.code, code, JSON.stringify(out));
      if (re) assert.match(out.message ?? "", re);
    });
  }

  test("text mode: ok and invalid base64", { timeout: 5000 }, async () => {
    const t = createFetchTransport({ baseUrl: base, format: "text" });
    assert.deepEqual(await outcome("text-ok", t), { sizes: [3, 4] });
    const bad = await outcome("bad-base64", t);
    assert.equal(bad.code, Code.Internal, JSON.stringify(bad));
    assert.match(bad.message ?? "", /base64/);
  });

  test("heartbeat watchdog fails a silent stream with UNAVAILABLE", { timeout: 5000 }, async () => {
    const t = createFetchTransport({ baseUrl: base, heartbeat: { interval: 100, graceMs: 300 } });
    const started = Date.now();
    const out = await outcome("silent", t);
    assert.equal(out.code, Code.Unavailable, JSON.stringify(out));
    assert.deepEqual(out.sizes, [1]);
    assert.ok(Date.now() - started < 3000);
  });

  test("connection refused → UNAVAILABLE", async () => {
    const out = await outcome("ok", createFetchTransport({ baseUrl: "http://127.0.0.1:1" }));
    assert.equal(out.code, Code.Unavailable);
  });

  test("client stream: request streams (Node fetch) and the buffered fallback", { timeout: 5000 }, async () => {
    const run = async (t: Transport) => {
      const client = createClient(TestService, t);
      let header: Headers | undefined;
      const res = await client.streamingInputCall(
        (async function* () {
          for (let i = 0; i < 5; i++) yield { payload: { body: new Uint8Array(i) } };
        })(),
        { headers: { "x-script": "count" }, onHeader: (h) => (header = h) },
      );
      return { frames: res.aggregatedPayloadSize, chunked: header?.get("x-chunked") };
    };
    assert.deepEqual(await run(createFetchTransport({ baseUrl: base })), { frames: 5, chunked: "true" });
    assert.deepEqual(await run(createFetchTransport({ baseUrl: base, requestStreams: "never" })), { frames: 5, chunked: "false" });
    // A fetch that refuses streamed bodies the way Chromium does over HTTP/1.1,
    // for an origin of its own (the fake server behind it): what the client
    // learns about an origin lasts as long as the page, for every transport.
    const pickyOrigin = "http://refuses-request-streams.test";
    let refusals = 0;
    const picky: typeof fetch = (url, init) => {
      if (init?.body instanceof ReadableStream) {
        refusals++;
        void init.body.cancel();
        return Promise.reject(new TypeError("Failed to fetch (ERR_H2_OR_QUIC_REQUIRED)"));
      }
      return fetch(String(url).replace(pickyOrigin, base), init);
    };
    const t = createFetchTransport({ baseUrl: pickyOrigin, fetch: picky });
    assert.deepEqual(await run(t), { frames: 5, chunked: "false" });
    assert.deepEqual(await run(t), { frames: 5, chunked: "false" });
    assert.equal(refusals, 1, "the origin is remembered as refusing request streams");
    assert.deepEqual(await run(createFetchTransport({ baseUrl: `${pickyOrigin}/`, fetch: picky })), { frames: 5, chunked: "false" });
    assert.equal(refusals, 1, "a new transport for the same origin remembers it too");
    // Another origin still gets request streams.
    assert.deepEqual(await run(createFetchTransport({ baseUrl: base })), { frames: 5, chunked: "true" });
  });

  test("client stream: a failure after more than 1 MiB went out is not replayed (nor taken for a refusal)", { timeout: 5000 }, async () => {
    // A fetch that reads the whole request stream, then fails like a dropped
    // connection (Chromium: TypeError "Failed to fetch").
    const attempts: string[] = [];
    // An origin of its own (the previous test marked `base` as refusing
    // request streams for this whole process), mapped back to the server.
    const alias = base.replace("127.0.0.1", "flaky.invalid");
    const flaky: typeof fetch = async (input, init) => {
      const url = String(input).replace(alias, base);
      if (init?.body instanceof ReadableStream) {
        const reader = (init.body as ReadableStream<Uint8Array>).getReader();
        let bytes = 0;
        for (let r = await reader.read(); r.done !== true; r = await reader.read()) bytes += r.value.length;
        attempts.push(`stream ${bytes}`);
        if (bytes > 1024 * 1024) throw new TypeError("Failed to fetch");
        return fetch(url, { ...init, body: new Uint8Array(0) });
      }
      attempts.push("buffered");
      return fetch(url, init);
    };
    const client = createClient(TestService, createFetchTransport({ baseUrl: alias, fetch: flaky }));
    const upload = (sizes: number[]) =>
      client.streamingInputCall(
        (async function* () {
          for (const n of sizes) yield { payload: { body: new Uint8Array(n) } };
        })(),
        { headers: { "x-script": "count" } },
      );
    const err = await upload([600_000, 600_000, 600_000]).then(
      () => assert.fail("the call succeeded"),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(err.code, Code.Unavailable, err.message);
    assert.equal(attempts.length, 1, `no resend: ${JSON.stringify(attempts)}`);
    // The origin was not marked as refusing request streams.
    await upload([1, 2]).catch(() => {});
    assert.match(attempts[1] ?? "", /^stream /, JSON.stringify(attempts));
  });

  test("no unhandled rejections", () => {
    assert.deepEqual(unhandled, []);
  });
});
