// The parity matrix: one suite, run for every transport (fetch and XHR, binary
// and text) in every engine (engines.ts), on a page cross-origin from the
// server, against `weir demo` and the connect-node reference server.
//
// What runs where (scripts/test keeps to 25 minutes on 2 cores): Chromium runs
// everything against both servers. Firefox and WebKit run the whole matrix
// for every transport against weir demo (every call type, cancellation seen
// by the backend with its latency, deadlines, heartbeats, the upload-stream
// fallback) but not against connect-node, whose answers do not depend on the
// engine; the 10,000-message case is Chromium's (it measures heap growth
// through Chromium's performance.memory).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { CallOutcome, CallSpec, TransportSpec } from "../browser/protocol.js";
import {
  ECHO_INITIAL_KEY,
  ECHO_INITIAL_VALUE,
  ECHO_TRAILING_KEY,
  ECHO_TRAILING_VALUE_B64,
  LARGE_REQUEST_SIZE,
  LARGE_RESPONSE_SIZE,
  SPECIAL_STATUS_MESSAGE,
  STATUS_MESSAGE,
  STREAMING_AGGREGATE_SIZE,
  STREAMING_REQUEST_SIZES,
  STREAMING_RESPONSE_SIZES,
} from "../../interop/src/interop-constants.js";
import { type Engine, type EnginePage, engines } from "./engines.js";
import { bundle, clientTargets, html, type ServerUnderTest, serveFiles, type StaticServer } from "./harness.js";

const T = { timeout: 30_000 };
const MiB = 1024 * 1024;
const C = { OK: 0, CANCELED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, UNIMPLEMENTED: 12, UNAVAILABLE: 14 };

let pages: StaticServer | undefined;
const figures: string[] = [];

before(async () => {
  pages = await serveFiles({ "/": ["text/html", html("/page.js")], "/page.js": ["text/javascript", await bundle("browser/page.ts")] });
});
after(async () => {
  await pages?.close();
  if (figures.length > 0) console.log(`figures\n${figures.map((f) => `  ${f}`).join("\n")}`);
});

const TRANSPORTS = [
  ["fetch", "binary"],
  ["fetch", "text"],
  ["xhr", "binary"],
  ["xhr", "text"],
] as const;

function ok(out: CallOutcome): void {
  assert.equal(out.code, C.OK, `expected OK, got ${out.code} ${JSON.stringify(out.message)}`);
}

for (const spec of engines()) {
  if (spec.unavailable !== undefined) {
    test(`${spec.name} is available`, () => assert.fail(spec.unavailable));
    continue;
  }
  describe(spec.name, { skip: spec.skip }, () => {
    let engine: Engine | undefined;
    before(async () => {
      engine = await spec.launch();
      console.log(`engine: ${engine.version}`);
    });
    after(async () => {
      await engine?.close();
    });
    const e = spec.name;
    for (const target of clientTargets()) {
    if (target.unavailable !== undefined) {
      test(`${target.name} is available`, () => assert.fail(target.unavailable));
      continue;
    }
    if (!spec.full && !target.isWeir) continue;
    describe(target.name, { skip: target.skip }, () => {
      let sut: ServerUnderTest | undefined;
      let page: EnginePage | undefined;
      const refusedProbes = new Map<string, number>();
      before(async () => {
        assert.ok(pages && engine);
        sut = await target.start([pages.origin]);
        page = await engine.open(`${pages.origin}/`);
        await page.waitFor(() => typeof window.weirParity !== "undefined", undefined, 15_000);
      });
      after(async () => {
        const errors = (await page?.errors()) ?? [];
        await page?.close();
        await sut?.server.stop();
        assert.deepEqual(errors, [], "no uncaught errors on the page");
      });

      for (const [kind, format] of TRANSPORTS) {
        describe(`${kind} ${format}`, () => {
          const tr = (extra: Partial<TransportSpec> = {}): TransportSpec => {
            assert.ok(sut);
            return { kind, format, baseUrl: sut.server.url, ...extra };
          };
          const run = async (spec: Omit<CallSpec, "transport"> & { transport?: TransportSpec }): Promise<CallOutcome> => {
            assert.ok(page);
            const out = await page.evaluate((s) => window.weirParity.call(s), { transport: tr(), ...spec } as CallSpec);
            // Each call makes a new transport; a refused request stream is
            // remembered per origin, so the page pays for it at most once.
            const origin = new URL(spec.transport?.baseUrl ?? tr().baseUrl).origin;
            refusedProbes.set(origin, (refusedProbes.get(origin) ?? 0) + (out.fetches ?? []).filter((f) => f.body === "stream" && f.outcome === "rejected").length);
            assert.ok((refusedProbes.get(origin) ?? 0) <= 1, `${refusedProbes.get(origin)} refused request streams to ${origin} on one page`);
            return out;
          };
          const label = `${e} ${kind} ${format}`;
          const bidi = target.isWeir ? {} : { skip: "connect-node answers bidi calls over HTTP/1.1 with 505; browsers cannot speak h2c" };

          test("empty_unary", T, async () => {
            const out = await run({ method: "EmptyCall", requests: [] });
            ok(out);
            assert.equal(out.count, 1);
          });

          test("large_unary", T, async () => {
            const out = await run({ method: "UnaryCall", requests: [{ responseSize: LARGE_RESPONSE_SIZE, payloadSize: LARGE_REQUEST_SIZE }] });
            ok(out);
            assert.deepEqual(out.sizes, [LARGE_RESPONSE_SIZE]);
          });

          test("server_streaming, headers before the first message", T, async () => {
            const out = await run({
              method: "StreamingOutputCall",
              requests: [{ responseParameters: [{ size: STREAMING_RESPONSE_SIZES[0], intervalUs: 600_000 }, ...STREAMING_RESPONSE_SIZES.slice(1).map((size) => ({ size }))] }],
            });
            ok(out);
            assert.deepEqual(out.sizes, [...STREAMING_RESPONSE_SIZES]);
            assert.ok(out.headerAt !== null && out.firstMessageAt !== null);
            if (target.isWeir && kind === "fetch" && e !== "firefox") {
              // weir sends headers at once; the first message comes 600 ms later.
              // (Chromium's XHR moves to HEADERS_RECEIVED only with the first
              // body bytes, so XHR cannot report headers earlier; Firefox's
              // fetch resolves only with the first body bytes too (headers at
              // 631 ms, first message at 632 ms); see README.)
              assert.ok(out.headerAt < out.firstMessageAt - 300, `headers at ${out.headerAt} ms, first message at ${out.firstMessageAt} ms`);
            }
          });

          test("client_streaming", T, async () => {
            const out = await run({ method: "StreamingInputCall", requests: STREAMING_REQUEST_SIZES.map((payloadSize) => ({ payloadSize })) });
            ok(out);
            assert.deepEqual(out.sizes, [STREAMING_AGGREGATE_SIZE]);
            if (kind === "fetch") {
              // Both servers speak HTTP/1.1 here. An engine without fetch upload
              // streaming (Firefox, WebKit) is detected up front: one buffered
              // body, no attempt. Chromium tries a request stream once per origin,
              // is refused, and sends one buffered body from then on.
              const last = out.fetches?.at(-1);
              assert.deepEqual(last, { body: "buffered", outcome: "response" }, JSON.stringify(out.fetches));
              const streams = await page!.evaluate(() => window.weirParity.hasRequestStreams(), undefined);
              if (!streams) assert.equal(out.fetches?.length, 1, `${e} has no upload streaming: no attempt, ${JSON.stringify(out.fetches)}`);
              const again = await run({ method: "StreamingInputCall", requests: [{ payloadSize: 3 }] });
              ok(again);
              assert.deepEqual(again.fetches, [{ body: "buffered", outcome: "response" }], "a new transport to the same origin does not try again");
            }
          });

          test("half_duplex (HalfDuplexCall)", { ...T, ...bidi }, async () => {
            const out = await run({
              method: "HalfDuplexCall",
              requests: STREAMING_RESPONSE_SIZES.map((size) => ({ responseParameters: [{ size }] })),
            });
            ok(out);
            assert.deepEqual(out.sizes, [...STREAMING_RESPONSE_SIZES]);
          });

          test("half-duplex use of FullDuplexCall (send all, then read)", { ...T, ...bidi }, async () => {
            const out = await run({ method: "FullDuplexCall", requests: [{ responseParameters: [{ size: 3 }] }, { responseParameters: [{ size: 4 }] }] });
            ok(out);
            assert.deepEqual(out.sizes, [3, 4]);
          });

          test("full duplex needs answers before the request stream ends → UNIMPLEMENTED", { ...T, ...bidi }, async () => {
            const out = await run({ method: "FullDuplexCall", requests: [{ responseParameters: [{ size: 3 }] }], keepRequestOpen: true });
            assert.equal(out.code, C.UNIMPLEMENTED, out.message);
            assert.match(out.message, /full-duplex.*WebTransport/);
          });

          test("empty_stream", { ...T, ...bidi }, async () => {
            const out = await run({ method: "FullDuplexCall", requests: [] });
            ok(out);
            assert.equal(out.count, 0);
          });

          test("empty server stream", T, async () => {
            const out = await run({ method: "StreamingOutputCall", requests: [{}] });
            ok(out);
            assert.equal(out.count, 0);
          });

          for (const method of ["UnaryCall", "StreamingOutputCall"] as const) {
            test(`custom_metadata (${method}), -bin trailer 0xababab`, T, async () => {
              const out = await run({
                method,
                requests: [{ responseSize: 1, responseParameters: [{ size: 1 }] }],
                headers: { [ECHO_INITIAL_KEY]: ECHO_INITIAL_VALUE, [ECHO_TRAILING_KEY]: ECHO_TRAILING_VALUE_B64 },
              });
              ok(out);
              assert.equal(out.header?.[ECHO_INITIAL_KEY], ECHO_INITIAL_VALUE);
              assert.equal(Buffer.from(out.trailer?.[ECHO_TRAILING_KEY] ?? "", "base64").toString("hex"), "ababab");
            });
          }

          test("status_code_and_message (unary)", T, async () => {
            const out = await run({ method: "UnaryCall", requests: [{ responseStatus: { code: 2, message: STATUS_MESSAGE } }] });
            assert.equal(out.code, C.UNKNOWN);
            assert.equal(out.message, STATUS_MESSAGE);
          });

          test("status_code_and_message (streaming)", T, async () => {
            const out = await run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 5 }], responseStatus: { code: 2, message: STATUS_MESSAGE } }] });
            assert.equal(out.code, C.UNKNOWN);
            assert.equal(out.message, STATUS_MESSAGE);
            assert.deepEqual(out.sizes, [5]);
          });

          test("special_status_message", T, async () => {
            const out = await run({ method: "UnaryCall", requests: [{ responseStatus: { code: 2, message: SPECIAL_STATUS_MESSAGE } }] });
            assert.equal(out.code, C.UNKNOWN);
            assert.equal(out.message, SPECIAL_STATUS_MESSAGE);
          });

          test("unimplemented_method", T, async () => {
            assert.equal((await run({ method: "UnimplementedCall", requests: [] })).code, C.UNIMPLEMENTED);
          });
          test("unimplemented_service", T, async () => {
            assert.equal((await run({ method: "UnimplementedService", requests: [] })).code, C.UNIMPLEMENTED);
          });

          test("1 MiB messages both ways", T, async () => {
            const out = await run({ method: "UnaryCall", requests: [{ responseSize: MiB, payloadSize: MiB }] });
            ok(out);
            assert.deepEqual(out.sizes, [MiB]);
            const s = await run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: MiB }, { size: MiB }, { size: MiB }] }] });
            ok(s);
            assert.deepEqual(s.sizes, [MiB, MiB, MiB]);
          });

          if (spec.full) test("10,000 small messages", T, async () => {
            const out = await run({
              method: "StreamingOutputCall",
              requests: [{ responseParameters: Array.from({ length: 10_000 }, () => ({ size: 100 })) }],
              countOnly: true,
              heapAt: 9_999,
            });
            ok(out);
            assert.equal(out.count, 10_000);
            if (target.isWeir) figures.push(`${label}: 10,000 × 100-byte messages in ${out.endAt} ms, JS heap growth ${((out.heapGrowth ?? 0) / 1024).toFixed(0)} KiB`);
          });

          test("deadline → DEADLINE_EXCEEDED, promptly", T, async () => {
            const out = await run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }, { size: 1, intervalUs: 10_000_000 }] }], timeoutMs: 400 });
            assert.equal(out.code, C.DEADLINE_EXCEEDED, out.message);
            // Every server here flushes the first message at once.
            assert.equal(out.count, 1, `${kind} ${format}: the first message arrives before the deadline`);
            assert.ok(out.endAt < 3000, `ended after ${out.endAt} ms`);
          });

          const cancels = async (what: string, call: Omit<CallSpec, "transport">) => {
            const before = (await sut?.cancellations?.()) ?? 0;
            const out = await run(call);
            assert.equal(out.code, C.CANCELED, out.message);
            if (sut?.cancellations !== undefined) {
              // The server sees the stream reset / connection close shortly after.
              let now = before;
              let seenAt = 0;
              for (let i = 0; i < 200 && now <= before; i++) {
                await new Promise((r) => setTimeout(r, 10));
                now = await sut.cancellations();
                seenAt = Date.now();
              }
              assert.ok(now > before, `weir_call_cancellations_total stayed at ${before}`);
              // The page's Date.now() and ours read the same clock; polled every 10 ms.
              if (out.abortedAt !== undefined) figures.push(`${label}: ${what}: abort → weir counted the cancel in ≤ ${seenAt - out.abortedAt} ms`);
            }
            return out;
          };

          test("cancel before headers", T, async () => {
            const out = await run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1, intervalUs: 5_000_000 }] }], cancel: { at: "immediately" } });
            assert.equal(out.code, C.CANCELED, out.message);
            assert.equal(out.count, 0);
          });

          test("cancel mid-stream (server saw it)", T, async () => {
            const out = await cancels("mid-stream", {
              method: "StreamingOutputCall",
              requests: [{ responseParameters: Array.from({ length: 200 }, (_, i) => ({ size: 10, intervalUs: i < 5 ? 0 : 50_000 })) }],
              cancel: { at: "afterMessages", count: 3 },
            });
            assert.ok(out.count >= 3 && out.count < 200);
          });

          test("cancel an idle stream (server saw it)", T, async () => {
            const out = await cancels("idle stream", {
              method: "StreamingOutputCall",
              requests: [{ responseParameters: [{ size: 10 }, { size: 10, intervalUs: 20_000_000 }] }],
              cancel: { at: "afterMessages", count: 1, delayMs: 300 },
            });
            assert.equal(out.count, 1);
            // The first message comes at once and the cancel ends the call at
            // once, not when the server's second message (20 s later) arrives.
            assert.ok(out.firstMessageAt !== null && out.firstMessageAt < 3000, `first message after ${out.firstMessageAt} ms`);
            assert.ok(out.endAt < 3000 + 300, `ended after ${out.endAt} ms`);
          });

          test("network failure → UNAVAILABLE", T, async () => {
            const out = await run({ transport: tr({ baseUrl: "http://127.0.0.1:1" }), method: "EmptyCall", requests: [] });
            assert.equal(out.code, C.UNAVAILABLE, out.message);
          });

          test("heartbeats keep an idle stream alive past the watchdog", { ...T, skip: target.isWeir ? false : "heartbeats are a weir extension" }, async () => {
            // Granted 1 s (weir's minimum); without heartbeats the watchdog
            // (2 × 1 s + 300 ms) would fail the 3 s silence with UNAVAILABLE.
            const out = await run({
              transport: tr({ heartbeat: { interval: 1000, graceMs: 300 } }),
              method: "StreamingOutputCall",
              requests: [{ responseParameters: [{ size: 7 }, { size: 8, intervalUs: 3_000_000 }] }],
            });
            ok(out);
            assert.deepEqual(out.sizes, [7, 8]);
            // The granted interval, in grpc-timeout syntax (weir says 1000000u).
            assert.match(out.header?.["weir-heartbeat"] ?? "", /^(1S|1000m|1000000u|1000000000n)$/);
          });
        });
      }
    });
  }
  });
}
