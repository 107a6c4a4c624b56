// gRPC over WebTransport in every engine (engines.ts): the interop cases
// against `weir demo` (its in-process service) and against `weir serve`
// proxying to the grpc-js upstream, on a page cross-origin from the server;
// sessions (sharing, refusal, loss and reconnection) and the auto transport.
//
// What runs where: the weir demo suite runs in every engine. In an engine
// without WebTransport (WebKitGTK) its cases that need a session are skipped
// and the fallback is asserted instead: the WebTransport transport fails
// UNIMPLEMENTED with a clear message and the auto transport takes fetch.
// Session loss, the server's close on SIGTERM and the interop cases through
// `weir serve` run in Chromium alone (they exercise the server, not the
// engine); the cancellation cases through `weir serve` run in Firefox too,
// where the backend sees a cancel only because version 2 of the mapping
// keeps the request side open to be reset (issue 16). Each cancel's delay
// (abort → weir counted it; through `weir serve`, abort → the grpc-js handler
// saw it) is printed under `figures`.

import assert from "node:assert/strict";
import { after, before, describe, type TestContext, test, type TestOptions } from "node:test";
import type { CallOutcome, CallSpec, TransportSpec } from "../browser/protocol.js";
import { startGateway, startUpstream, gatewayConfig, gatewayAvailability, upstreamEvents } from "../../interop/src/harness/gateway.js";
import type { RunningServer } from "../../interop/src/harness/server-process.js";
import {
  ECHO_INITIAL_KEY,
  ECHO_INITIAL_VALUE,
  ECHO_TRAILING_KEY,
  ECHO_TRAILING_VALUE_B64,
  LARGE_REQUEST_SIZE,
  LARGE_RESPONSE_SIZE,
  SLEEP_US,
  SPECIAL_STATUS_MESSAGE,
  STATUS_MESSAGE,
  STREAMING_AGGREGATE_SIZE,
  STREAMING_REQUEST_SIZES,
  STREAMING_RESPONSE_SIZES,
} from "../../interop/src/interop-constants.js";
import { type Engine, type EnginePage, engines } from "./engines.js";
import { bundle, cancellationsAt, clientTargets, freePort, html, serveFiles, startWeirDemo, type StaticServer, type WeirUnderTest } from "./harness.js";

const T = { timeout: 30_000 };
const C = { OK: 0, CANCELED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, UNIMPLEMENTED: 12, UNAVAILABLE: 14 };
const weir = clientTargets().find((t) => t.isWeir);
const skipWeir = weir === undefined ? "weir target not selected (INTEROP_TARGETS)" : weir.skip;
const gateway = gatewayAvailability();

let pages: StaticServer | undefined;
let engine: Engine | undefined;
const figures: string[] = [];

before(async () => {
  if (weir?.unavailable !== undefined) assert.fail(weir.unavailable);
  pages = await serveFiles({ "/": ["text/html", html("/page.js")], "/page.js": ["text/javascript", await bundle("browser/page.ts")] });
});
after(async () => {
  await pages?.close();
  if (figures.length > 0) console.log(`figures\n${figures.map((f) => `  ${f}`).join("\n")}`);
});

/** Opens the parity page; `query` e.g. "?no-webtransport" (see PRELUDE in harness.ts). */
async function openPage(origin: string, query = ""): Promise<EnginePage> {
  assert.ok(engine);
  const page = await engine.open(`${origin}/${query}`);
  await page.waitFor(() => typeof window.weirParity !== "undefined", undefined, 15_000);
  return page;
}

async function closePage(page: EnginePage | undefined): Promise<void> {
  const errors = (await page?.errors()) ?? [];
  await page?.close();
  assert.deepEqual(errors, [], "no uncaught errors on the page");
}

function ok(out: CallOutcome): void {
  assert.equal(out.code, C.OK, `expected OK, got ${out.code} ${JSON.stringify(out.message)}`);
}

/** weir_calls_total with code INTERNAL. */
async function internalCalls(admin: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^weir_calls_total\{[^}]*code="INTERNAL"[^}]*\}\s+(\S+)/gm)) sum += Number(m[1]);
  return sum;
}

/**
 * Before a cancelling call: returns a check that weir counted a cancellation
 * (weir_call_cancellations_total grew). A cancel that weir recorded as
 * INTERNAL instead is a known weir bug (see the report): the test is then
 * marked TODO with what weir recorded.
 */
async function weirSawCancel(admin: string, label?: string): Promise<Saw> {
  const before = await cancellationsAt(admin);
  const internal = await internalCalls(admin);
  return async (t, out) => {
    try {
      await eventually(`weir_call_cancellations_total grows past ${before}`, async () => (await cancellationsAt(admin)) > before, 3000, 10);
      // The page's Date.now() and ours read the same clock; polled every 10 ms.
      if (label !== undefined && out.abortedAt !== undefined) figures.push(`${label}: abort → weir counted the cancel in ≤ ${Date.now() - out.abortedAt} ms`);
    } catch (e) {
      if ((await internalCalls(admin)) > internal) t.todo("known weir bug: the browser's cancel was recorded as INTERNAL, not CANCELLED");
      throw e;
    }
  };
}

/** Asserts, after a cancelling call, that the server saw the cancellation. */
type Saw = (t: TestContext, out: CallOutcome) => Promise<void>;

async function eventually(what: string, check: () => Promise<boolean>, ms = 3000, pollMs = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

interface Ctx {
  run(spec: Omit<CallSpec, "transport"> & { transport?: TransportSpec }): Promise<CallOutcome>;
  /** Call before a cancelling call; the returned function asserts the server saw a cancellation. */
  watchCancel(what: string): Promise<Saw>;
  /** The service sends its headers before its first message (grpc-js sends them with it). */
  headersEarly: boolean;
  /** Why the page cannot open a session (the engine has no WebTransport), else undefined. */
  unavailable(): string | undefined;
}

/**
 * Cancellation reaching the server, over WebTransport: a client stream before
 * its first message, a bidi call after its first answer, a server stream
 * mid-stream. Version 2 of the mapping keeps the request side open until the
 * call ends, so the page's abort resets it: that is what reaches the server
 * from Firefox, which sends no STOP_SENDING (issue 16).
 */
function cancelCases(ctx: () => Ctx): void {
  const run = (spec: Parameters<Ctx["run"]>[0]) => ctx().run(spec);
  const test = (name: string, opts: TestOptions, fn: (t: TestContext) => Promise<void>) =>
    wtTest(name, opts, () => ctx().unavailable(), fn);

  test("cancel_after_begin (the server saw it)", T, async (t) => {
    const saw = await ctx().watchCancel("cancel_after_begin");
    const out = await run({ method: "StreamingInputCall", requests: [], keepRequestOpen: true, cancel: { at: "afterMs", ms: 300 } });
    assert.equal(out.code, C.CANCELED, out.message);
    await saw(t, out);
  });

  test("cancel_after_first_response (bidi; the server saw it)", T, async (t) => {
    const saw = await ctx().watchCancel("bidi after its first answer");
    const out = await run({
      method: "FullDuplexCall",
      requests: [{ responseParameters: [{ size: 31415 }], payloadSize: 27182 }],
      keepRequestOpen: true,
      cancel: { at: "afterMessages", count: 1 },
    });
    assert.equal(out.code, C.CANCELED, out.message);
    assert.equal(out.count, 1);
    await saw(t, out);
  });

  test("cancel a server stream mid-stream (the server saw it)", T, async (t) => {
    const saw = await ctx().watchCancel("server stream mid-stream");
    const out = await run({
      method: "StreamingOutputCall",
      requests: [{ responseParameters: Array.from({ length: 200 }, (_, i) => ({ size: 10, intervalUs: i < 5 ? 0 : 50_000 })) }],
      cancel: { at: "afterMessages", count: 3 },
    });
    assert.equal(out.code, C.CANCELED, out.message);
    assert.ok(out.count >= 3 && out.count < 200);
    await saw(t, out);
  });
}

/** The interop cases over WebTransport, in engine `e`. */
function interopCases(ctx: () => Ctx): void {
  const run = (spec: Parameters<Ctx["run"]>[0]) => ctx().run(spec);
  const test = (name: string, opts: TestOptions, fn: (t: TestContext) => Promise<void>) =>
    wtTest(name, opts, () => ctx().unavailable(), fn);

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

  test("server_streaming (headers before the first message)", T, async () => {
    const out = await run({
      method: "StreamingOutputCall",
      requests: [{ responseParameters: [{ size: STREAMING_RESPONSE_SIZES[0], intervalUs: 600_000 }, ...STREAMING_RESPONSE_SIZES.slice(1).map((size) => ({ size }))] }],
    });
    ok(out);
    assert.deepEqual(out.sizes, [...STREAMING_RESPONSE_SIZES]);
    assert.ok(out.headerAt !== null && out.firstMessageAt !== null);
    if (ctx().headersEarly) assert.ok(out.headerAt < out.firstMessageAt - 300, `headers at ${out.headerAt} ms, first message at ${out.firstMessageAt} ms`);
  });

  test("client_streaming", T, async () => {
    const out = await run({ method: "StreamingInputCall", requests: STREAMING_REQUEST_SIZES.map((payloadSize) => ({ payloadSize })) });
    ok(out);
    assert.deepEqual(out.sizes, [STREAMING_AGGREGATE_SIZE]);
  });

  test("ping_pong (full duplex: each request waits for the previous answer)", T, async () => {
    const out = await run({
      method: "FullDuplexCall",
      pingPong: true,
      requests: STREAMING_RESPONSE_SIZES.map((size, i) => ({ responseParameters: [{ size }], payloadSize: STREAMING_REQUEST_SIZES[i] })),
    });
    ok(out);
    assert.deepEqual(out.sizes, [...STREAMING_RESPONSE_SIZES]);
  });

  test("empty_stream", T, async () => {
    const out = await run({ method: "FullDuplexCall", requests: [] });
    ok(out);
    assert.equal(out.count, 0);
  });

  test("half_duplex (HalfDuplexCall)", T, async () => {
    const out = await run({ method: "HalfDuplexCall", requests: STREAMING_RESPONSE_SIZES.map((size) => ({ responseParameters: [{ size }] })) });
    ok(out);
    assert.deepEqual(out.sizes, [...STREAMING_RESPONSE_SIZES]);
  });

  for (const method of ["UnaryCall", "FullDuplexCall"] as const) {
    test(`custom_metadata (${method})`, T, async () => {
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

  for (const method of ["UnaryCall", "FullDuplexCall"] as const) {
    test(`status_code_and_message (${method})`, T, async () => {
      const out = await run({ method, requests: [{ responseStatus: { code: 2, message: STATUS_MESSAGE } }] });
      assert.equal(out.code, C.UNKNOWN, out.message);
      assert.equal(out.message, STATUS_MESSAGE);
    });
  }

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

  cancelCases(ctx);

  test("timeout_on_sleeping_server → DEADLINE_EXCEEDED, promptly", T, async () => {
    const out = await run({
      method: "FullDuplexCall",
      requests: [{ responseParameters: [{ size: 1, intervalUs: SLEEP_US }], payloadSize: 27182 }],
      keepRequestOpen: true,
      timeoutMs: 300,
    });
    assert.equal(out.code, C.DEADLINE_EXCEEDED, out.message);
    assert.ok(out.endAt < 3000, `ended after ${out.endAt} ms`);
  });

  test("deadline on a server stream after the first message", T, async () => {
    const out = await run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }, { size: 1, intervalUs: 10_000_000 }] }], timeoutMs: 400 });
    assert.equal(out.code, C.DEADLINE_EXCEEDED, out.message);
    assert.equal(out.count, 1);
  });

  test("1 MiB messages both ways", T, async () => {
    const MiB = 1024 * 1024;
    const out = await run({ method: "UnaryCall", requests: [{ responseSize: MiB, payloadSize: MiB }] });
    ok(out);
    assert.deepEqual(out.sizes, [MiB]);
  });
}

/** A test that needs a WebTransport session: skipped (saying why) where the engine has none. */
function wtTest(name: string, opts: TestOptions, unavailable: () => string | undefined, fn: (t: TestContext) => Promise<void>): void {
  test(name, opts, async (t) => {
    const why = unavailable();
    if (why !== undefined) {
      t.skip(why);
      return;
    }
    await fn(t);
  });
}

for (const spec of engines()) {
  if (spec.unavailable !== undefined) {
    test(`${spec.name} is available`, () => assert.fail(spec.unavailable));
    continue;
  }
  const e = spec.name;
  describe(e, { skip: spec.skip }, () => {
    before(async () => {
      engine = await spec.launch();
    });
    after(async () => {
      await engine?.close();
      engine = undefined;
    });

    describe("WebTransport: weir demo", { skip: skipWeir }, () => {
      let sut: WeirUnderTest | undefined;
      let page: EnginePage | undefined;
      let noWebTransport: string | undefined;
      const needsWt = (name: string, opts: TestOptions, fn: (t: TestContext) => Promise<void>) => wtTest(name, opts, () => noWebTransport, fn);
      const tr = (extra: Partial<TransportSpec> = {}): TransportSpec => {
        assert.ok(sut);
        return { kind: "webtransport", format: "binary", baseUrl: sut.server.url, ...extra };
      };
      const run: Ctx["run"] = (spec) => {
        assert.ok(page);
        return page.evaluate((s) => window.weirParity.call(s), { transport: tr(), ...spec } as CallSpec);
      };
      before(async () => {
        assert.ok(pages);
        sut = await startWeirDemo([pages.origin], { webtransport: "127.0.0.1:0" });
        assert.ok(sut.webtransportUrl, `weir printed no webtransport line:\n${sut.server.output()}`);
        page = await openPage(pages.origin);
        const has = await page.evaluate(() => window.weirParity.hasWebTransport(), undefined);
        // Chromium and Firefox have it; the suite is here to notice if that changes.
        if (e !== "webkit") assert.ok(has, `headless ${e} has WebTransport`);
        if (!has) noWebTransport = `${engine?.version} has no WebTransport (the fallback is asserted in "no WebTransport in the browser")`;
        console.log(`engine: ${engine?.version}, WebTransport: ${has}`);
      });
      after(async () => {
        await closePage(page);
        await sut?.server.stop();
      });

      interopCases(() => ({
        run,
        unavailable: () => noWebTransport,
        headersEarly: true,
        async watchCancel(what) {
          assert.ok(sut?.admin);
          return weirSawCancel(sut.admin, `${e} webtransport, weir demo: ${what}`);
        },
      }));

      needsWt("one session for all calls: 100 calls at once", T, async () => {
        assert.ok(page);
        await run({ method: "EmptyCall", requests: [] });
        const sessions0 = await page.evaluate(() => window.weirParity.sessionsOpened(), undefined);
        const t0 = Date.now();
        const outs = await page.evaluate(
          (s) => window.weirParity.callMany(s, 100),
          { transport: tr(), method: "FullDuplexCall", requests: [{ responseParameters: [{ size: 10, intervalUs: 500_000 }] }, { responseParameters: [{ size: 20 }] }] } as CallSpec,
        );
        const ms = Date.now() - t0;
        for (const out of outs) {
          ok(out);
          assert.deepEqual(out.sizes, [10, 20]);
        }
        assert.equal(await page.evaluate(() => window.weirParity.sessionsOpened(), undefined), sessions0, "no new session");
        // Each call takes ≥ 500 ms; one after the other they would take 50 s.
        assert.ok(ms < 5000, `100 concurrent calls took ${ms} ms`);
        figures.push(`${e} webtransport: 100 concurrent bidi calls (500 ms each) on one session in ${ms} ms`);
      });

      needsWt("full duplex: an answer arrives while the request stream stays open", T, async () => {
        const out = await run({ method: "FullDuplexCall", requests: [{ responseParameters: [{ size: 3 }] }], keepRequestOpen: true, cancel: { at: "afterMessages", count: 1 } });
        assert.equal(out.code, C.CANCELED);
        assert.deepEqual(out.sizes, [3]);
      });

      needsWt("explicit url and hashes (serverCertificateHashes, no discovery)", T, async () => {
        assert.ok(sut?.webtransportUrl);
        const hash = /sha-256 ([0-9a-f]{64})/.exec(sut.server.output())?.[1];
        assert.ok(hash);
        const out = await run({ transport: tr({ baseUrl: "http://127.0.0.1:1", url: sut.webtransportUrl, certificateHashes: [hash] }), method: "EmptyCall", requests: [] });
        ok(out);
      });

      needsWt("closing the session from the page: open calls CANCELLED, the next call opens a new session", T, async () => {
        assert.ok(page);
        const sessions0 = await page.evaluate(() => window.weirParity.sessionsOpened(), undefined);
        const pending = run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }, { size: 1, intervalUs: 5_000_000 }] }] });
        await new Promise((r) => setTimeout(r, 500));
        await page.evaluate((t) => window.weirParity.closeSession(t), tr());
        const out = await pending;
        assert.equal(out.code, C.CANCELED, out.message);
        assert.equal(out.count, 1);
        ok(await run({ method: "EmptyCall", requests: [] }));
        assert.equal(await page.evaluate(() => window.weirParity.sessionsOpened(), undefined), sessions0 + 1);
      });

      needsWt("auto: WebTransport for bidi and client streaming, fetch for unary and server streaming", T, async () => {
        const auto = tr({ kind: "auto" });
        const bidi = await run({ transport: auto, method: "FullDuplexCall", pingPong: true, requests: [{ responseParameters: [{ size: 1 }] }, { responseParameters: [{ size: 2 }] }] });
        ok(bidi);
        assert.deepEqual(bidi.choices, ["webtransport"]);
        const cs = await run({ transport: auto, method: "StreamingInputCall", requests: [{ payloadSize: 5 }] });
        ok(cs);
        assert.deepEqual(cs.choices, ["webtransport"]);
        const unary = await run({ transport: auto, method: "UnaryCall", requests: [{ responseSize: 5 }] });
        ok(unary);
        assert.deepEqual(unary.choices, ["fetch"]);
        const ss = await run({ transport: auto, method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }] }] });
        ok(ss);
        assert.deepEqual(ss.choices, ["fetch"]);
        const all = await run({ transport: tr({ kind: "auto", all: true }), method: "UnaryCall", requests: [{ responseSize: 5 }] });
        ok(all);
        assert.deepEqual(all.choices, ["webtransport"]);
      });

      needsWt("a page whose origin is not allowed: the session is refused → UNAVAILABLE, clearly", T, async () => {
        const other = await serveFiles({ "/": ["text/html", html("/page.js")], "/page.js": ["text/javascript", await bundle("browser/page.ts")] });
        try {
          const p = await openPage(other.origin);
          const out = await p.evaluate((s) => window.weirParity.call(s), { transport: tr(), method: "EmptyCall", requests: [] } as CallSpec);
          assert.equal(out.code, C.UNAVAILABLE, out.message);
          assert.match(out.message, /could not open a WebTransport session.*origin/);
          // auto falls back to fetch (which fails CORS here: UNAVAILABLE too, but over fetch).
          const auto = await p.evaluate((s) => window.weirParity.call(s), { transport: tr({ kind: "auto" }), method: "FullDuplexCall", requests: [] } as CallSpec);
          assert.deepEqual(auto.choices, ["fetch"]);
          await closePage(p);
        } finally {
          await other.close();
        }
      });

      test("no WebTransport in the browser: UNIMPLEMENTED with a clear message; auto uses fetch", T, async () => {
        assert.ok(pages);
        // An engine that has WebTransport gets a page without it; one that has
        // none (WebKitGTK) shows its own detection.
        const p = await openPage(pages.origin, noWebTransport === undefined ? "?no-webtransport" : "");
        assert.equal(await p.evaluate(() => window.weirParity.hasWebTransport(), undefined), false);
        const out = await p.evaluate((s) => window.weirParity.call(s), { transport: tr(), method: "EmptyCall", requests: [] } as CallSpec);
        assert.equal(out.code, C.UNIMPLEMENTED, out.message);
        assert.match(out.message, /WebTransport is not available/);
        const auto = await p.evaluate((s) => window.weirParity.call(s), { transport: tr({ kind: "auto" }), method: "StreamingInputCall", requests: [{ payloadSize: 3 }] } as CallSpec);
        ok(auto);
        assert.deepEqual(auto.choices, ["fetch"]);
        const bidi = await p.evaluate((s) => window.weirParity.call(s), { transport: tr({ kind: "auto" }), method: "HalfDuplexCall", requests: [{ responseParameters: [{ size: 4 }] }] } as CallSpec);
        ok(bidi);
        assert.deepEqual(bidi.sizes, [4]);
        assert.deepEqual(bidi.choices, ["fetch"]);
        await closePage(p);
      });
    });

    describe("WebTransport: session lost and reconnection (weir demo restarted on the same ports)", { skip: skipWeir ?? (spec.full ? false : "Chromium only") }, () => {
      test("open calls fail UNAVAILABLE; the next call opens a new session (new certificate, from discovery)", { timeout: 60_000 }, async () => {
        assert.ok(pages);
        const [http, udp] = [await freePort(), await freePort(true)];
        const opts = { listen: `127.0.0.1:${http}`, webtransport: `127.0.0.1:${udp}` };
        let sut: WeirUnderTest | undefined = await startWeirDemo([pages.origin], opts);
        const page = await openPage(pages.origin);
        try {
          const tr: TransportSpec = { kind: "webtransport", format: "binary", baseUrl: sut.server.url };
          const run = (call: Omit<CallSpec, "transport">) => page.evaluate((s) => window.weirParity.call(s), { transport: tr, ...call } as CallSpec);
          ok(await run({ method: "EmptyCall", requests: [] }));
          const sessions0 = await page.evaluate(() => window.weirParity.sessionsOpened(), undefined);
          const pending = run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }, { size: 1, intervalUs: 20_000_000 }] }] });
          await new Promise((r) => setTimeout(r, 500));
          const t0 = Date.now();
          await sut.server.stop();
          const lost = await pending;
          assert.equal(lost.code, C.UNAVAILABLE, lost.message);
          assert.equal(lost.count, 1);
          figures.push(`webtransport: open call failed ${Date.now() - t0} ms after SIGTERM to weir: ${lost.message}`);
          sut = await startWeirDemo([pages.origin], opts);
          ok(await run({ method: "EmptyCall", requests: [] }));
          ok(await run({ method: "FullDuplexCall", pingPong: true, requests: [{ responseParameters: [{ size: 4 }] }] }));
          assert.equal(await page.evaluate(() => window.weirParity.sessionsOpened(), undefined), sessions0 + 1);
        } finally {
          await closePage(page);
          await sut?.server.stop();
        }
      });
    });

    // Chromium: every interop case; Firefox: the cancellation cases (issue 16: the backend sees a
    // Firefox page's cancel only through the reset of the request side, which version 2 keeps open).
    const serveCases = spec.full ? interopCases : e === "firefox" ? cancelCases : undefined;
    describe("WebTransport: weir serve → grpc-js upstream", { skip: gateway.skip ?? skipWeir ?? (serveCases !== undefined ? false : "Chromium and Firefox only") }, () => {
      let upstream: RunningServer | undefined;
      let gw: (RunningServer & { adminUrl: string | undefined }) | undefined;
      let page: EnginePage | undefined;
      const run: Ctx["run"] = (spec) => {
        assert.ok(page && gw);
        const transport: TransportSpec = { kind: "webtransport", format: "binary", baseUrl: gw.url };
        return page.evaluate((s) => window.weirParity.call(s), { transport, ...spec } as CallSpec);
      };
      before(async () => {
        if (gateway.unavailable !== undefined) assert.fail(gateway.unavailable);
        assert.ok(pages);
        upstream = await startUpstream("grpcjs");
        gw = await startGateway({
          name: "weir serve (webtransport)",
          config: gatewayConfig({ upstream: upstream.url, allowOrigins: [pages.origin], admin: true, extra: '[webtransport]\naddress = "127.0.0.1:0"' }),
        });
        assert.match(gw.output(), /webtransport on https:\/\//, "weir serve started its WebTransport listener");
        page = await openPage(pages.origin);
      });
      after(async () => {
        await closePage(page);
        await gw?.stop();
        await upstream?.stop();
      });

      serveCases?.(() => ({
        run,
        unavailable: () => undefined,
        headersEarly: false,
        async watchCancel(what) {
          assert.ok(upstream && gw?.adminUrl);
          const count = () => upstreamEvents(upstream as RunningServer).filter((e) => e.event === "cancelled").length;
          const before = count();
          const weirSaw = await weirSawCancel(gw.adminUrl);
          return async (t, out) => {
            // The handler's event is read off the upstream's stdout, polled every 10 ms.
            await eventually(`the grpc-js handler reports a cancellation (had ${before})`, async () => count() > before, 3000, 10);
            if (out.abortedAt !== undefined) figures.push(`${e} webtransport, weir serve → grpc-js: ${what}: abort → the handler saw the cancel in ≤ ${Date.now() - out.abortedAt} ms`);
            await weirSaw(t, out);
          };
        },
      }));
    });

    describe("WebTransport: weir serve stopped (SIGTERM) while a session is open", { skip: gateway.skip ?? skipWeir ?? (spec.full ? false : "Chromium only") }, () => {
      test("the page's WebTransport.closed resolves {closeCode: 0, reason: \"shutting down\"}; the open call fails UNAVAILABLE; onSessionClose has the code and reason", { timeout: 60_000 }, async () => {
        if (gateway.unavailable !== undefined) assert.fail(gateway.unavailable);
        assert.ok(pages);
        const upstream = await startUpstream("grpcjs");
        // §2.4: the session is closed once its last call ended or the grace period is over.
        const gw = await startGateway({
          name: "weir serve (webtransport, SIGTERM)",
          config: gatewayConfig({
            upstream: upstream.url,
            allowOrigins: [pages.origin],
            extra: '[timeouts]\nshutdown_grace = "1s"\n\n[webtransport]\naddress = "127.0.0.1:0"',
          }),
        });
        const page = await openPage(pages.origin);
        try {
          const tr: TransportSpec = { kind: "webtransport", format: "binary", baseUrl: gw.url };
          const run = (call: Omit<CallSpec, "transport">) => page.evaluate((s) => window.weirParity.call(s), { transport: tr, ...call } as CallSpec);
          ok(await run({ method: "EmptyCall", requests: [] }));
          const pending = run({ method: "StreamingOutputCall", requests: [{ responseParameters: [{ size: 1 }, { size: 1, intervalUs: 30_000_000 }] }] });
          await new Promise((r) => setTimeout(r, 500));
          const t0 = Date.now();
          gw.kill("SIGTERM");
          const out = await pending;
          assert.equal(out.code, C.UNAVAILABLE, out.message);
          assert.equal(out.count, 1);
          // The gateway ends the call at the end of its grace period (a trailer block: "the gateway is
          // shutting down; retry the call"), or the session's close does (`... closed by the server
          // (code 0: shutting down)`): UNAVAILABLE either way.
          assert.match(out.message, /shutting down/);
          await page.waitFor(() => window.weirParity.sessionsClosed().native.length > 0, undefined, 5000);
          const closed = await page.evaluate(() => window.weirParity.sessionsClosed(), undefined);
          assert.deepEqual(
            closed.native.map(({ by, closeCode, reason, error }) => ({ by, closeCode, reason, error })),
            [{ by: "resolved", closeCode: 0, reason: "shutting down", error: undefined }],
            "WebTransport.closed",
          );
          assert.deepEqual(
            closed.reported.map(({ by, closeCode, reason }) => ({ by, closeCode, reason })),
            [{ by: "server", closeCode: 0, reason: "shutting down" }],
            "onSessionClose",
          );
          figures.push(`webtransport, weir serve (shutdown_grace 1s): SIGTERM → the open call failed UNAVAILABLE after ${Date.now() - t0} ms: ${out.message}`);
        } finally {
          await closePage(page);
          await gw.stop();
          await upstream.stop();
        }
      });
    });
  });
}
