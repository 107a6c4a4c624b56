// `weir serve` with a TLS listener (ALPN h2 and http/1.1) in front of the
// grpc-js upstream, called with connect-node's gRPC-Web client over HTTP/2 and
// over HTTP/1.1, trusting a throwaway self-signed certificate made at test
// time. The browser side (request streams over h2) is web/client's
// browser-upload suite.

import assert from "node:assert/strict";
import * as https from "node:https";
import * as tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { TestService } from "../src/gen/grpc/testing/test_pb.js";
import { PayloadSchema } from "../src/gen/grpc/testing/messages_pb.js";
import { STREAMING_AGGREGATE_SIZE, STREAMING_REQUEST_SIZES, STREAMING_RESPONSE_SIZES } from "../src/interop-constants.js";
import { type Gateway, gatewayAvailability, gatewayConfig, startGateway, startUpstream, tlsUrl, upstreamEvents, waitForEvent } from "../src/harness/gateway.js";
import type { RunningServer } from "../src/harness/server-process.js";
import { certUnavailable, selfSignedCert, type TestCert } from "../src/harness/tls.js";
import { type CancelledEvent, type MessageEvent, TEST_ID_KEY } from "../src/upstream-events.js";

const T = { timeout: 30_000 };
const availability = gatewayAvailability();
const noCert = certUnavailable();
const skip = availability.skip ?? (noCert !== undefined ? `${noCert}; the TLS suite needs it` : false);
if (skip !== false) console.log(`skipping weir serve TLS suite: ${skip}`);

let nextId = 0;
const newId = (what: string) => `${what}-${process.pid}-${++nextId}`;

/** The protocol a TLS listener picks when the client offers only `offer`. */
function alpn(url: string, ca: string, offer: string[]): Promise<string | false> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca, ALPNProtocols: offer }, () => {
      const p = s.alpnProtocol ?? false;
      s.end();
      resolve(p);
    });
    s.once("error", reject);
  });
}

if (availability.unavailable !== undefined) {
  test("weir serve is available", () => assert.fail(availability.unavailable));
} else {
  describe("weir serve, TLS listener (ALPN h2 + http/1.1), connect-node gRPC-Web client", { skip }, () => {
    let cert: TestCert | undefined;
    let upstream: RunningServer | undefined;
    let gateway: Gateway | undefined;
    let base = "";
    before(async () => {
      cert = selfSignedCert();
      upstream = await startUpstream("grpcjs");
      gateway = await startGateway({ config: gatewayConfig({ upstream: upstream.url, tls: { cert: cert.certPath, key: cert.keyPath } }) });
      base = await tlsUrl(gateway);
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.stop();
      cert?.cleanup();
    });

    test("the listener negotiates h2 and http/1.1 (ALPN) with the generated certificate", T, async () => {
      assert.ok(cert);
      assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(await alpn(base, cert.certPem, ["h2", "http/1.1"]), "h2");
      assert.equal(await alpn(base, cert.certPem, ["http/1.1"]), "http/1.1");
    });

    for (const httpVersion of ["2", "1.1"] as const) {
      describe(`HTTP/${httpVersion}`, () => {
        let client: Client<typeof TestService>;
        let sessions: Http2SessionManager | undefined;
        let agent: https.Agent | undefined;
        const h1Protocols: (string | false | null)[] = [];
        before(() => {
          assert.ok(cert);
          if (httpVersion === "2") {
            sessions = new Http2SessionManager(base, undefined, { ca: cert.certPem });
            client = createClient(TestService, createGrpcWebTransport({ baseUrl: base, httpVersion, sessionManager: sessions }));
          } else {
            // Offer http/1.1 explicitly and record what each connection got.
            agent = new https.Agent({ ca: cert.certPem, ALPNProtocols: ["http/1.1"], keepAlive: true });
            agent.on("free", (socket: tls.TLSSocket) => h1Protocols.push(socket.alpnProtocol));
            client = createClient(TestService, createGrpcWebTransport({ baseUrl: base, httpVersion, nodeOptions: { agent } }));
          }
        });
        after(() => {
          sessions?.abort();
          agent?.destroy();
        });

        test("unary", T, async () => {
          const r = await client.unaryCall({ responseSize: 314, payload: create(PayloadSchema, { body: new Uint8Array(271) }) });
          assert.equal(r.payload?.body.length, 314);
          if (httpVersion === "1.1") {
            assert.ok(h1Protocols.length > 0, "the agent saw its connection");
            assert.ok(h1Protocols.every((p) => p === "http/1.1"), `ALPN per connection: ${JSON.stringify(h1Protocols)}`);
          }
        });

        test("server streaming", T, async () => {
          const sizes: number[] = [];
          for await (const m of client.streamingOutputCall({ responseParameters: STREAMING_RESPONSE_SIZES.map((size) => ({ size })) })) {
            sizes.push(m.payload?.body.length ?? -1);
          }
          assert.deepEqual(sizes, [...STREAMING_RESPONSE_SIZES]);
        });

        test("client streaming (the upstream reports every message)", T, async () => {
          const id = newId(`tls-h${httpVersion}-cs`);
          const r = await client.streamingInputCall(
            (async function* () {
              for (const n of STREAMING_REQUEST_SIZES) yield { payload: create(PayloadSchema, { body: new Uint8Array(n) }) };
            })(),
            { headers: { [TEST_ID_KEY]: id } },
          );
          assert.equal(r.aggregatedPayloadSize, STREAMING_AGGREGATE_SIZE);
          assert.ok(upstream);
          const seen = upstreamEvents(upstream).filter((e): e is MessageEvent => e.event === "message" && e.id === id);
          assert.deepEqual(
            seen.map((e) => e.index),
            STREAMING_REQUEST_SIZES.map((_, i) => i),
          );
        });

        // Over HTTP/1.1 the abort closes the connection; over HTTP/2 it is a
        // RST_STREAM(CANCEL) on a stream whose request body is still open, which
        // the gateway passes on by resetting the upstream stream.
        test(
          "aborting a client stream mid-upload: the upstream sees the cancellation",
          T,
          async () => {
            const id = newId(`tls-h${httpVersion}-abort`);
            const abort = new AbortController();
            let release: () => void = () => {};
            const held = new Promise<void>((r) => (release = r));
            const call = client.streamingInputCall(
              (async function* () {
                yield { payload: create(PayloadSchema, { body: new Uint8Array(10) }) };
                await held;
              })(),
              { headers: { [TEST_ID_KEY]: id }, signal: abort.signal },
            );
            call.catch(() => {});
            assert.ok(upstream);
            try {
              await waitForEvent(upstream, (e): e is MessageEvent => e.event === "message" && e.id === id, 5_000, `message 0 of ${id}`);
              abort.abort();
              await assert.rejects(call);
              await waitForEvent(upstream, (e): e is CancelledEvent => e.event === "cancelled" && e.id === id, httpVersion === "2" ? 2_000 : 5_000, `cancelled event of ${id}`);
            } finally {
              release();
            }
          },
        );

        if (httpVersion === "2") {
          test("full duplex (an answer before the request stream ends)", T, async () => {
            let release: () => void = () => {};
            const released = new Promise<void>((r) => (release = r));
            const sizes: number[] = [];
            for await (const m of client.fullDuplexCall(
              (async function* () {
                yield { responseParameters: [{ size: 3 }] };
                await released; // only after the first answer
                yield { responseParameters: [{ size: 4 }] };
              })(),
            )) {
              sizes.push(m.payload?.body.length ?? -1);
              release();
            }
            assert.deepEqual(sizes, [3, 4]);
          });
        }
      });
    }
  });
}
