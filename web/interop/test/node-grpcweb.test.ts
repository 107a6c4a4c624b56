// Node suite: @connectrpc/connect-node's gRPC-Web client (binary proto)
// against each server under test, over HTTP/1.1 and over HTTP/2 (h2c).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type CallOptions, Code, ConnectError, createClient, decodeBinaryHeader, encodeBinaryHeader, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { TestService, UnimplementedService } from "../src/gen/grpc/testing/test_pb.js";
import type { StreamingInputCallRequestSchema, StreamingOutputCallRequestSchema, StreamingOutputCallResponse } from "../src/gen/grpc/testing/messages_pb.js";
import {
  ECHO_INITIAL_KEY,
  ECHO_INITIAL_VALUE,
  ECHO_TRAILING_KEY,
  ECHO_TRAILING_VALUE,
  LARGE_REQUEST_SIZE,
  LARGE_RESPONSE_SIZE,
  SHORT_DEADLINE_MS,
  SLEEP_US,
  SPECIAL_STATUS_MESSAGE,
  STATUS_MESSAGE,
  STREAMING_AGGREGATE_SIZE,
  STREAMING_REQUEST_SIZES,
  STREAMING_RESPONSE_SIZES,
} from "../src/interop-constants.js";
import { AsyncQueue } from "../src/harness/async-queue.js";
import type { RunningServer } from "../src/harness/server-process.js";
import { selectedTargets } from "../src/harness/targets.js";

type OutReq = MessageInitShape<typeof StreamingOutputCallRequestSchema>;
type InReq = MessageInitShape<typeof StreamingInputCallRequestSchema>;

/** Hang guard per test; nothing here measures speed. */
const CASE_TIMEOUT = { timeout: 30_000 };

const zeros = (n: number) => ({ body: new Uint8Array(n) });

function assertZeroPayload(body: Uint8Array | undefined, size: number, what: string): void {
  assert.ok(body !== undefined, `${what}: payload missing`);
  assert.equal(body.length, size, `${what}: payload size`);
  assert.ok(body.every((b) => b === 0), `${what}: payload must be zero bytes`);
}

async function expectError(call: Promise<unknown>, code: Code, message?: string): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    const err = ConnectError.from(e);
    assert.equal(Code[err.code], Code[code], `status code (message: ${JSON.stringify(err.rawMessage)})`);
    if (message !== undefined) assert.equal(err.rawMessage, message, "status message");
    return err;
  }
  assert.fail(`call succeeded, expected ${Code[code]}`);
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

function metadataHeaders(): Record<string, string> {
  return {
    [ECHO_INITIAL_KEY]: ECHO_INITIAL_VALUE,
    [ECHO_TRAILING_KEY]: encodeBinaryHeader(ECHO_TRAILING_VALUE),
  };
}

function assertEchoedMetadata(header: Headers | undefined, trailer: Headers | undefined): void {
  assert.equal(header?.get(ECHO_INITIAL_KEY), ECHO_INITIAL_VALUE, "initial metadata echoed as a response header");
  const raw = trailer?.get(ECHO_TRAILING_KEY);
  assert.ok(raw !== null && raw !== undefined, "trailing metadata echoed as a trailer");
  assert.deepEqual(decodeBinaryHeader(raw), ECHO_TRAILING_VALUE, "trailing binary metadata value");
}

for (const target of selectedTargets()) {
  if (target.unavailable !== undefined) {
    test(`${target.name} is available`, () => assert.fail(target.unavailable));
    continue;
  }
  describe(target.name, { skip: target.skip }, () => {
    let server: RunningServer | undefined;
    before(async () => {
      server = await target.start();
    });
    after(async () => {
      await server?.stop();
    });

    for (const httpVersion of ["1.1", "2"] as const) {
      describe(`gRPC-Web binary over HTTP/${httpVersion}`, () => {
        let sessions: Http2SessionManager | undefined;
        let client: Client<typeof TestService>;
        let unimplementedClient: Client<typeof UnimplementedService>;

        before(() => {
          assert.ok(server, "server started");
          const transport = httpVersion === "2"
            ? createGrpcWebTransport({
                baseUrl: server.url,
                httpVersion,
                sessionManager: (sessions = new Http2SessionManager(server.url)),
              })
            : createGrpcWebTransport({ baseUrl: server.url, httpVersion });
          client = createClient(TestService, transport);
          unimplementedClient = createClient(UnimplementedService, transport);
        });
        after(() => {
          sessions?.abort();
        });

        // connect-style servers refuse bidi streams over HTTP/1.1 (505), and a
        // full-duplex call cannot be full duplex there anyway. Streaming cases
        // built on FullDuplexCall therefore use StreamingOutputCall (one
        // request, a stream of responses) over HTTP/1.1.
        const bidi = httpVersion === "2";
        const streamingMethod = bidi ? "FullDuplexCall" : "StreamingOutputCall";
        function streamingCall(request: OutReq | undefined, options: CallOptions = {}): AsyncIterable<StreamingOutputCallResponse> {
          if (bidi) {
            return client.fullDuplexCall(
              (async function* () {
                if (request !== undefined) yield request;
              })(),
              options,
            );
          }
          return client.streamingOutputCall(request ?? {}, options);
        }

        test("empty_unary", CASE_TIMEOUT, async () => {
          const res = await client.emptyCall({});
          assert.deepEqual(Object.keys(res).filter((k) => k !== "$typeName" && k !== "$unknown"), []);
        });

        test("large_unary", CASE_TIMEOUT, async () => {
          const res = await client.unaryCall({ responseSize: LARGE_RESPONSE_SIZE, payload: zeros(LARGE_REQUEST_SIZE) });
          assertZeroPayload(res.payload?.body, LARGE_RESPONSE_SIZE, "response");
        });

        test("server_streaming", CASE_TIMEOUT, async () => {
          const res = await drain(
            client.streamingOutputCall({ responseParameters: STREAMING_RESPONSE_SIZES.map((size) => ({ size })) }),
          );
          assert.deepEqual(res.map((r) => r.payload?.body.length), [...STREAMING_RESPONSE_SIZES]);
          res.forEach((r, i) => assertZeroPayload(r.payload?.body, STREAMING_RESPONSE_SIZES[i]!, `response ${i}`));
        });

        test("client_streaming", CASE_TIMEOUT, async () => {
          async function* requests(): AsyncGenerator<InReq> {
            for (const size of STREAMING_REQUEST_SIZES) yield { payload: zeros(size) };
          }
          const res = await client.streamingInputCall(requests());
          assert.equal(res.aggregatedPayloadSize, STREAMING_AGGREGATE_SIZE);
        });

        test("ping_pong", { ...CASE_TIMEOUT, skip: httpVersion === "1.1" ? "full duplex needs HTTP/2" : false }, async () => {
          const requests = new AsyncQueue<OutReq>();
          const responses = client.fullDuplexCall(requests)[Symbol.asyncIterator]();
          try {
            for (let i = 0; i < STREAMING_REQUEST_SIZES.length; i++) {
              const size = STREAMING_RESPONSE_SIZES[i]!;
              requests.push({ responseParameters: [{ size }], payload: zeros(STREAMING_REQUEST_SIZES[i]!) });
              const r = await responses.next();
              assert.equal(r.done, false, `response ${i} arrives before the next request is sent`);
              assertZeroPayload(r.value?.payload?.body, size, `response ${i}`);
            }
            requests.close();
            assert.equal((await responses.next()).done, true, "stream ends after the client finishes");
          } finally {
            requests.close();
          }
        });

        test(`empty_stream (${streamingMethod})`, CASE_TIMEOUT, async () => {
          const res = await drain(streamingCall(undefined));
          assert.equal(res.length, 0);
        });

        test("custom_metadata (UnaryCall)", CASE_TIMEOUT, async () => {
          let header: Headers | undefined;
          let trailer: Headers | undefined;
          const res = await client.unaryCall(
            { responseSize: LARGE_RESPONSE_SIZE, payload: zeros(LARGE_REQUEST_SIZE) },
            { headers: metadataHeaders(), onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
          );
          assertZeroPayload(res.payload?.body, LARGE_RESPONSE_SIZE, "response");
          assertEchoedMetadata(header, trailer);
        });

        test(`custom_metadata (${streamingMethod})`, CASE_TIMEOUT, async () => {
          let header: Headers | undefined;
          let trailer: Headers | undefined;
          const res = await drain(
            streamingCall({ responseParameters: [{ size: LARGE_RESPONSE_SIZE }], payload: zeros(LARGE_REQUEST_SIZE) }, {
              headers: metadataHeaders(),
              onHeader: (h) => (header = h),
              onTrailer: (t) => (trailer = t),
            }),
          );
          assert.equal(res.length, 1);
          assertZeroPayload(res[0]?.payload?.body, LARGE_RESPONSE_SIZE, "response");
          assertEchoedMetadata(header, trailer);
        });

        test("status_code_and_message (UnaryCall)", CASE_TIMEOUT, async () => {
          await expectError(
            client.unaryCall({ responseStatus: { code: 2, message: STATUS_MESSAGE } }),
            Code.Unknown,
            STATUS_MESSAGE,
          );
        });

        test(`status_code_and_message (${streamingMethod})`, CASE_TIMEOUT, async () => {
          await expectError(
            drain(streamingCall({ responseStatus: { code: 2, message: STATUS_MESSAGE } })),
            Code.Unknown,
            STATUS_MESSAGE,
          );
        });

        test("special_status_message", CASE_TIMEOUT, async () => {
          await expectError(
            client.unaryCall({ responseStatus: { code: 2, message: SPECIAL_STATUS_MESSAGE } }),
            Code.Unknown,
            SPECIAL_STATUS_MESSAGE,
          );
        });

        test("unimplemented_method", CASE_TIMEOUT, async () => {
          await expectError(client.unimplementedCall({}), Code.Unimplemented);
        });

        test("unimplemented_service", CASE_TIMEOUT, async () => {
          await expectError(unimplementedClient.unimplementedCall({}), Code.Unimplemented);
        });

        test(`cancel_after_first_response (${streamingMethod})`, CASE_TIMEOUT, async () => {
          const abort = new AbortController();
          const requests = new AsyncQueue<OutReq>();
          // Full duplex needs HTTP/2; over HTTP/1.1 cancel a server stream instead.
          const stream = bidi
            ? client.fullDuplexCall(requests, { signal: abort.signal })
            : client.streamingOutputCall(
                {
                  responseParameters: STREAMING_RESPONSE_SIZES.map((size, i) => ({ size, intervalUs: i === 0 ? 0 : SLEEP_US })),
                },
                { signal: abort.signal },
              );
          requests.push({ responseParameters: [{ size: STREAMING_RESPONSE_SIZES[0] }], payload: zeros(STREAMING_REQUEST_SIZES[0]) });
          const responses = stream[Symbol.asyncIterator]();
          try {
            const first = await responses.next();
            assert.equal(first.done, false);
            assertZeroPayload(first.value?.payload?.body, STREAMING_RESPONSE_SIZES[0], "first response");
            abort.abort();
            await expectError(responses.next(), Code.Canceled);
          } finally {
            requests.close();
          }
        });

        test("timeout_on_sleeping_server (deadline enforced by the server)", CASE_TIMEOUT, async () => {
          // No client-side timer: only the grpc-timeout header, so the
          // DEADLINE_EXCEEDED status has to come from the server.
          const err = await expectError(
            drain(
              client.streamingOutputCall(
                { responseParameters: [{ size: 1, intervalUs: SLEEP_US }] },
                { headers: { "grpc-timeout": `${SHORT_DEADLINE_MS}m` } },
              ),
            ),
            Code.DeadlineExceeded,
          );
          assert.ok(err.metadata instanceof Headers);
        });

        test(`timeout_on_sleeping_server (${streamingMethod})`, CASE_TIMEOUT, async () => {
          const requests = new AsyncQueue<OutReq>();
          const opts = { timeoutMs: SHORT_DEADLINE_MS };
          const sleepy = { responseParameters: [{ size: 1, intervalUs: SLEEP_US }], payload: zeros(STREAMING_REQUEST_SIZES[0]) };
          const stream = bidi ? client.fullDuplexCall(requests, opts) : client.streamingOutputCall(sleepy, opts);
          requests.push(sleepy);
          try {
            await expectError(drain(stream), Code.DeadlineExceeded);
          } finally {
            requests.close();
          }
        });
      });
    }

    // Not gRPC-Web, but the same port must speak native gRPC (h2c); the
    // reference server also speaks the Connect protocol.
    describe("other protocols on the same port", () => {
      const protocols: { name: string; only?: string; make: (url: string, s: Http2SessionManager) => Transport }[] = [
        { name: "native gRPC over HTTP/2", make: (baseUrl, sessionManager) => createGrpcTransport({ baseUrl, sessionManager }) },
        {
          name: "Connect over HTTP/1.1",
          only: "reference (connect-node)",
          make: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
        },
      ];
      for (const p of protocols) {
        const skip = p.only !== undefined && p.only !== target.name ? `${target.name} does not serve it` : false;
        test(`${p.name}: large_unary and server_streaming`, { ...CASE_TIMEOUT, skip }, async () => {
          assert.ok(server);
          const sessions = new Http2SessionManager(server.url);
          try {
            const c = createClient(TestService, p.make(server.url, sessions));
            const res = await c.unaryCall({ responseSize: LARGE_RESPONSE_SIZE, payload: zeros(LARGE_REQUEST_SIZE) });
            assertZeroPayload(res.payload?.body, LARGE_RESPONSE_SIZE, "unary response");
            const stream = await drain(c.streamingOutputCall({ responseParameters: STREAMING_RESPONSE_SIZES.map((size) => ({ size })) }));
            assert.deepEqual(stream.map((r) => r.payload?.body.length), [...STREAMING_RESPONSE_SIZES]);
          } finally {
            sessions.abort();
          }
        });
      }
    });

    describe("bad input (raw HTTP/1.1 requests)", () => {
      const path = "/grpc.testing.TestService/EmptyCall";
      const emptyFrame = new Uint8Array(5);

      test("GET on a gRPC-Web method is 405", CASE_TIMEOUT, async () => {
        assert.ok(server);
        const res = await fetch(server.url + path, {
          method: "GET",
          headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        assert.equal(res.status, 405, `GET ${path}: HTTP ${res.status}`);
      });

      test("POST with an unknown content type is 415", CASE_TIMEOUT, async () => {
        assert.ok(server);
        const res = await fetch(server.url + path, {
          method: "POST",
          headers: { "content-type": "text/plain" },
          body: emptyFrame,
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        assert.equal(res.status, 415, `POST ${path} as text/plain: HTTP ${res.status}`);
      });
    });
  });
}
