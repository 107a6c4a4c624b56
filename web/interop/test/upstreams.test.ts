// The gateway suites' upstreams on their own: the grpc-js server and the
// connect-node reference server, called directly with native gRPC (h2c) by
// connect-node's gRPC client. Checks the interop behaviours and the events
// (cancellations, header dumps) the gateway suites rely on.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, decodeBinaryHeader, encodeBinaryHeader, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { TestService, UnimplementedService } from "../src/gen/grpc/testing/test_pb.js";
import type { StreamingOutputCallRequestSchema } from "../src/gen/grpc/testing/messages_pb.js";
import {
  ECHO_INITIAL_KEY,
  ECHO_INITIAL_VALUE,
  ECHO_TRAILING_KEY,
  ECHO_TRAILING_VALUE,
  LARGE_REQUEST_SIZE,
  LARGE_RESPONSE_SIZE,
  SLEEP_US,
  SPECIAL_STATUS_MESSAGE,
  STATUS_MESSAGE,
  STREAMING_AGGREGATE_SIZE,
  STREAMING_REQUEST_SIZES,
  STREAMING_RESPONSE_SIZES,
} from "../src/interop-constants.js";
import { AsyncQueue } from "../src/harness/async-queue.js";
import { startUpstream, type UpstreamKind, waitForEvent } from "../src/harness/gateway.js";
import type { RunningServer } from "../src/harness/server-process.js";
import { type CancelledEvent, DUMP_HEADERS_KEY, type MetadataEvent, TEST_ID_KEY, type UpstreamEvent } from "../src/upstream-events.js";

type OutReq = MessageInitShape<typeof StreamingOutputCallRequestSchema>;

const CASE_TIMEOUT = { timeout: 20_000 };
const zeros = (n: number) => ({ body: new Uint8Array(n) });

async function expectCode(call: Promise<unknown>, code: Code): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    const err = ConnectError.from(e);
    assert.equal(Code[err.code], Code[code], `status (message: ${JSON.stringify(err.rawMessage)})`);
    return err;
  }
  assert.fail(`call succeeded, expected ${Code[code]}`);
}

async function drain<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const cancelledOf = (id: string) => (e: UpstreamEvent): e is CancelledEvent => e.event === "cancelled" && e.id === id;
const metadataOf = (id: string) => (e: UpstreamEvent): e is MetadataEvent => e.event === "metadata" && e.id === id;

for (const kind of ["grpcjs", "connect"] as const satisfies readonly UpstreamKind[]) {
  describe(`${kind} upstream, native gRPC`, () => {
    let upstream: RunningServer | undefined;
    let sessions: Http2SessionManager | undefined;
    let client: Client<typeof TestService>;
    let unimplemented: Client<typeof UnimplementedService>;

    before(async () => {
      upstream = await startUpstream(kind);
      sessions = new Http2SessionManager(upstream.url);
      const transport = createGrpcTransport({ baseUrl: upstream.url, sessionManager: sessions });
      client = createClient(TestService, transport);
      unimplemented = createClient(UnimplementedService, transport);
    });
    after(async () => {
      sessions?.abort();
      await upstream?.stop();
    });

    test("unary, large payloads, echoed metadata", CASE_TIMEOUT, async () => {
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const res = await client.unaryCall(
        { responseSize: LARGE_RESPONSE_SIZE, payload: zeros(LARGE_REQUEST_SIZE) },
        {
          headers: { [ECHO_INITIAL_KEY]: ECHO_INITIAL_VALUE, [ECHO_TRAILING_KEY]: encodeBinaryHeader(ECHO_TRAILING_VALUE) },
          onHeader: (h) => (header = h),
          onTrailer: (t) => (trailer = t),
        },
      );
      assert.equal(res.payload?.body.length, LARGE_RESPONSE_SIZE);
      assert.equal(header?.get(ECHO_INITIAL_KEY), ECHO_INITIAL_VALUE);
      assert.deepEqual(decodeBinaryHeader(trailer?.get(ECHO_TRAILING_KEY) ?? ""), ECHO_TRAILING_VALUE);
      await client.emptyCall({});
    });

    test("server, client, full and half duplex streaming", CASE_TIMEOUT, async () => {
      const out = await drain(client.streamingOutputCall({ responseParameters: STREAMING_RESPONSE_SIZES.map((size) => ({ size })) }));
      assert.deepEqual(out.map((r) => r.payload?.body.length), [...STREAMING_RESPONSE_SIZES]);

      const sum = await client.streamingInputCall(
        (async function* () {
          for (const size of STREAMING_REQUEST_SIZES) yield { payload: zeros(size) };
        })(),
      );
      assert.equal(sum.aggregatedPayloadSize, STREAMING_AGGREGATE_SIZE);

      // Full duplex: each answer arrives before the next request is sent.
      const requests = new AsyncQueue<OutReq>();
      const responses = client.fullDuplexCall(requests)[Symbol.asyncIterator]();
      for (const size of STREAMING_RESPONSE_SIZES) {
        requests.push({ responseParameters: [{ size }] });
        const r = await responses.next();
        assert.equal(r.value?.payload?.body.length, size);
      }
      requests.close();
      assert.equal((await responses.next()).done, true);

      const half = await drain(
        client.halfDuplexCall(
          (async function* () {
            for (const size of STREAMING_RESPONSE_SIZES) yield { responseParameters: [{ size }] };
          })(),
        ),
      );
      assert.deepEqual(half.map((r) => r.payload?.body.length), [...STREAMING_RESPONSE_SIZES]);
    });

    test("statuses: response_status, special message, unimplemented", CASE_TIMEOUT, async () => {
      const err = await expectCode(client.unaryCall({ responseStatus: { code: 2, message: STATUS_MESSAGE } }), Code.Unknown);
      assert.equal(err.rawMessage, STATUS_MESSAGE);
      const special = await expectCode(client.unaryCall({ responseStatus: { code: 2, message: SPECIAL_STATUS_MESSAGE } }), Code.Unknown);
      assert.equal(special.rawMessage, SPECIAL_STATUS_MESSAGE);
      await expectCode(drain(client.streamingOutputCall({ responseStatus: { code: 2, message: STATUS_MESSAGE } })), Code.Unknown);
      await expectCode(client.unimplementedCall({}), Code.Unimplemented);
      await expectCode(unimplemented.unimplementedCall({}), Code.Unimplemented);
    });

    test("a cancelled stream is reported; a completed one is not", CASE_TIMEOUT, async () => {
      assert.ok(upstream);
      const done = `done-${kind}`;
      await drain(client.streamingOutputCall({ responseParameters: [{ size: 1 }] }, { headers: { [TEST_ID_KEY]: done } }));
      const id = `cancel-${kind}`;
      const abort = new AbortController();
      const stream = client.streamingOutputCall(
        { responseParameters: [{ size: 1 }, { size: 1, intervalUs: SLEEP_US }] },
        { signal: abort.signal, headers: { [TEST_ID_KEY]: id } },
      )[Symbol.asyncIterator]();
      assert.equal((await stream.next()).done, false);
      abort.abort();
      await expectCode(stream.next(), Code.Canceled);
      const ev = await waitForEvent(upstream, cancelledOf(id), 5_000, "cancelled event");
      assert.equal(ev.method, "grpc.testing.TestService/StreamingOutputCall");
      assert.equal(upstream.output().includes(`"id":"${done}"`), false, "a completed call is not reported as cancelled");
    });

    test("headers are dumped on request, grpc-timeout included", CASE_TIMEOUT, async () => {
      assert.ok(upstream);
      const id = `dump-${kind}`;
      await client.emptyCall({}, { headers: { [DUMP_HEADERS_KEY]: "1", [TEST_ID_KEY]: id, "x-custom": "v" }, timeoutMs: 5_000 });
      const ev = await waitForEvent(upstream, metadataOf(id), 5_000, "metadata event");
      assert.equal(ev.headers["x-custom"], "v");
      assert.equal(ev.headers.te, "trailers");
      assert.match(ev.headers["grpc-timeout"] ?? "", /^\d+[HMSmun]$/);
    });

    test("a deadline ends a sleeping stream, and is reported", CASE_TIMEOUT, async () => {
      assert.ok(upstream);
      const id = `deadline-${kind}`;
      await expectCode(
        drain(client.streamingOutputCall({ responseParameters: [{ size: 1, intervalUs: SLEEP_US }] }, { timeoutMs: 300, headers: { [TEST_ID_KEY]: id } })),
        Code.DeadlineExceeded,
      );
      await waitForEvent(upstream, cancelledOf(id), 5_000, "cancelled event");
    });
  });
}
