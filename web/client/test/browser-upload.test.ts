// True upload streaming from a page: over HTTP/2 with TLS, Chromium's fetch
// sends a ReadableStream body (duplex: "half") chunk by chunk, and weir serve
// passes each request message on to the upstream as it arrives.
//
// weir serve gets a TLS listener (ALPN h2 and http/1.1) with a throwaway
// self-signed certificate made here with openssl (Chromium runs with
// --ignore-certificate-errors, for this suite only), plus a cleartext
// listener, in front of the grpc-js upstream, which prints an event for each
// request message it receives (interop/src/upstream-events.ts). The page is
// cross-origin (allowed in [cors]). Its request streams are gated: message
// i+1 is handed to the transport only after the upstream has reported message
// i, so a buffered upload could not finish at all.
//
// The cleartext listener shows the fallback on the same gateway: Chromium
// refuses request streams over HTTP/1.1, the transport resends one buffered
// body. (browser-parity.test.ts runs client streaming and half duplex through
// that fallback for every transport against weir demo and connect-node.)
//
// The HTTP version of each response comes from the DevTools protocol
// (Network.responseReceived): the page's performance entries leave
// nextHopProtocol empty for cross-origin calls without Timing-Allow-Origin.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { RequestSpec } from "../browser/protocol.js";
import type { UploadOutcome, UploadSpec, UploadState } from "../browser/upload-protocol.js";
import { type Gateway, gatewayAvailability, gatewayConfig, startGateway, startUpstream, tlsUrl, upstreamEvents, waitForEvent } from "../../interop/src/harness/gateway.js";
import type { RunningServer } from "../../interop/src/harness/server-process.js";
import { certUnavailable, selfSignedCert, type TestCert } from "../../interop/src/harness/tls.js";
import type { CancelledEvent, MessageEvent, UpstreamEvent } from "../../interop/src/upstream-events.js";
import { bundle, html, launch, serveFiles, type StaticServer } from "./harness.js";

const T = { timeout: 30_000 };
/** How long the upstream may take to report a message or a cancellation. */
const NOTICE_MS = 5_000;
const C = { OK: 0, CANCELED: 1 };

const availability = gatewayAvailability();
const noCert = certUnavailable();
const skip = availability.skip ?? (noCert !== undefined ? `${noCert}; the upload suite needs a TLS listener` : false);
if (skip !== false) console.log(`skipping browser upload suite: ${skip}`);

let nextId = 0;
const newId = (what: string) => `${what}-${process.pid}-${++nextId}`;
const messageOf = (id: string, index: number) => (e: UpstreamEvent): e is MessageEvent => e.event === "message" && e.id === id && e.index === index;
const cancelledOf = (id: string) => (e: UpstreamEvent): e is CancelledEvent => e.event === "cancelled" && e.id === id;

if (availability.unavailable !== undefined) {
  test("weir serve is available", () => assert.fail(availability.unavailable));
} else {
  describe("upload streaming from a page: fetch request streams over HTTP/2 (TLS) through weir serve", { skip }, () => {
    let cert: TestCert | undefined;
    let upstream: RunningServer | undefined;
    let gateway: Gateway | undefined;
    let pages: StaticServer | undefined;
    let browser: Browser | undefined;
    let page: Page | undefined;
    let h2Base = "";
    let h1Base = "";
    const pageErrors: string[] = [];
    /** URL, resource type and HTTP version of every response the page got. */
    const responses: { url: string; type: string; protocol: string }[] = [];
    const protocolsOf = (base: string) => responses.filter((r) => r.url.startsWith(`${base}/`));

    before(async () => {
      cert = selfSignedCert();
      pages = await serveFiles({ "/": ["text/html", html("/upload.js")], "/upload.js": ["text/javascript", await bundle("browser/upload-page.ts")] });
      upstream = await startUpstream("grpcjs");
      gateway = await startGateway({
        config: gatewayConfig({ upstream: upstream.url, allowOrigins: [pages.origin], tls: { cert: cert.certPath, key: cert.keyPath } }),
      });
      h2Base = await tlsUrl(gateway);
      h1Base = gateway.url;
      browser = await launch(["--ignore-certificate-errors"]);
      page = await browser.newPage();
      page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
      const cdp = await page.context().newCDPSession(page);
      cdp.on("Network.responseReceived", (e) => responses.push({ url: e.response.url, type: e.type, protocol: e.response.protocol ?? "" }));
      await cdp.send("Network.enable");
      await page.goto(`${pages.origin}/`);
      await page.waitForFunction(() => typeof window.weirUpload !== "undefined", undefined, { timeout: 15_000 });
    });
    after(async () => {
      await page?.close();
      await browser?.close();
      await pages?.close();
      await gateway?.stop();
      await upstream?.stop();
      cert?.cleanup();
      assert.deepEqual(pageErrors, [], "no uncaught errors on the page");
    });

    const start = (spec: UploadSpec) => page!.evaluate((s) => window.weirUpload.start(s), spec);
    const release = (h: number) => page!.evaluate((x) => window.weirUpload.release(x), h);
    const state = (h: number): Promise<UploadState> => page!.evaluate((x) => window.weirUpload.state(x), h);
    const result = (h: number): Promise<UploadOutcome> => page!.evaluate((x) => window.weirUpload.result(x), h);
    const seen = (id: string) => upstreamEvents(upstream!).filter((e): e is MessageEvent => e.event === "message" && e.id === id).map((e) => e.index);

    /**
     * Runs a gated call: after each message but the last, waits until the
     * upstream has received it — while the page still holds the next one and
     * the request stream is open — then lets the page send the next.
     */
    async function streamedUpload(spec: Omit<UploadSpec, "gated" | "baseUrl">): Promise<UploadOutcome> {
      const h = await start({ ...spec, baseUrl: h2Base, gated: true });
      for (let i = 0; i < spec.requests.length - 1; i++) {
        await waitForEvent(upstream!, messageOf(spec.id, i), NOTICE_MS, `message ${i} of ${spec.id} (the upload did not stream)`);
        const st = await state(h);
        assert.equal(st.sent, i + 1, `the page has handed over exactly ${i + 1} message(s) when the upstream reports message ${i}`);
        assert.ok(!st.requestEnded && !st.finished, "the request stream is still open");
        assert.deepEqual(seen(spec.id), Array.from({ length: i + 1 }, (_, k) => k), "the upstream has nothing the page has not sent");
        await release(h);
      }
      const out = await result(h);
      assert.deepEqual(seen(spec.id), spec.requests.map((_, k) => k), "the upstream received every message once, in order");
      assert.deepEqual(out.fetches, [{ body: "stream", outcome: "response" }], "one fetch, with a ReadableStream body, no fallback");
      return out;
    }

    test("the page's runtime supports fetch request streams", T, async () => {
      assert.equal(await page!.evaluate(() => window.weirUpload.supportsRequestStreams()), true);
    });

    test("client streaming (StreamingInputCall): each message reaches the upstream before the page sends the next", T, async () => {
      const sizes = [27182, 8, 1828, 45904];
      const out = await streamedUpload({ method: "StreamingInputCall", id: newId("cs"), requests: sizes.map((payloadSize) => ({ payloadSize })) });
      assert.equal(out.code, C.OK, out.message);
      assert.deepEqual(out.sizes, [sizes.reduce((a, b) => a + b, 0)]);
      const seenResponses = protocolsOf(h2Base);
      assert.ok(seenResponses.some((r) => r.type === "Fetch"), JSON.stringify(responses));
      assert.ok(seenResponses.every((r) => r.protocol === "h2"), `HTTP version of the responses from ${h2Base}: ${JSON.stringify(seenResponses)}`);
    });

    test("client streaming, grpc-web-text: each message is its own base64 chunk (padding mid-body)", T, async () => {
      // Envelopes of 5 + 3 + n bytes: n = 1, 2, 3 give every padding length.
      const sizes = [1, 2, 3, 4];
      const out = await streamedUpload({ method: "StreamingInputCall", format: "text", id: newId("cs-text"), requests: sizes.map((payloadSize) => ({ payloadSize })) });
      assert.equal(out.code, C.OK, out.message);
      assert.deepEqual(out.sizes, [10]);
    });

    test("half duplex (HalfDuplexCall): the requests stream up before the page finishes, the answers come after", T, async () => {
      const answers = [31415, 9, 2653];
      const requests: RequestSpec[] = answers.map((size) => ({ responseParameters: [{ size }] }));
      const out = await streamedUpload({ method: "HalfDuplexCall", id: newId("hd"), requests });
      assert.equal(out.code, C.OK, out.message);
      assert.deepEqual(out.sizes, answers);
      const at = (what: string) => out.events.find((e) => e.what === what)?.at ?? NaN;
      const answerTimes = out.events.filter((e) => e.what.startsWith("answer")).map((e) => e.at);
      assert.equal(answerTimes.length, answers.length);
      assert.ok(answerTimes.every((t) => t >= at("requestEnd")), `answers ${JSON.stringify(answerTimes)} ms after the request stream ended at ${at("requestEnd")} ms`);
    });

    // weir serve does not pass an HTTP/2 RST_STREAM on a client stream whose
    // request body is still open on to the upstream (closing the connection
    // does): Chromium aborts with RST_STREAM(CANCEL) and keeps the connection,
    // so the upstream call stays open. Reproduced without a browser in
    // interop/test/gateway-tls.test.ts. The page side must hold regardless.
    let abortedId: string | undefined;
    test("abort mid-upload: the call ends CANCELED at once, message 2 never leaves the page", T, async () => {
      const id = newId("abort");
      const h = await start({ baseUrl: h2Base, method: "StreamingInputCall", id, requests: [{ payloadSize: 10 }, { payloadSize: 20 }], gated: true });
      await waitForEvent(upstream!, messageOf(id, 0), NOTICE_MS, `message 0 of ${id}`);
      await page!.evaluate((x) => window.weirUpload.abort(x), h);
      const out = await result(h);
      assert.equal(out.code, C.CANCELED, out.message);
      assert.equal(out.sent, 1);
      assert.equal(out.fetches.length, 1, "no resend after an abort");
      assert.match(out.fetches[0]?.error ?? "", /^AbortError/);
      abortedId = id;
    });

    // Chromium, when a page aborts a streaming upload, first ends the request stream cleanly
    // (an empty DATA frame with END_STREAM) and resets it only a moment later (seen in weir's
    // h2 frame log). The gateway forwards the clean end at once, as it must; an upstream that
    // answers a finished client stream immediately (grpc-js summing its input) has then
    // completed the call before the reset arrives, and has nothing left to cancel. So this
    // check can pass or not depending on that race, which no gateway can decide.
    const CHROMIUM_ABORT = "Chromium ends the upload (END_STREAM) before its RST_STREAM; a fast upstream completes the call first";
    test("abort mid-upload: the upstream sees the cancellation", { ...T, todo: CHROMIUM_ABORT }, async () => {
      assert.ok(abortedId !== undefined, "the abort case ran");
      const ev = await waitForEvent(upstream!, cancelledOf(abortedId), 2_000, `cancelled event of ${abortedId}`);
      assert.equal(ev.method, "grpc.testing.TestService/StreamingInputCall");
      assert.deepEqual(seen(abortedId), [0], "message 1 never left the page");
    });

    test("cleartext HTTP/1.1 listener of the same gateway: the same code falls back to one buffered body, and remembers the origin", T, async () => {
      const sizes = [27182, 8, 1828];
      const requests = sizes.map((payloadSize) => ({ payloadSize }));
      const first = await result(await start({ baseUrl: h1Base, method: "StreamingInputCall", id: newId("h1"), requests, gated: false }));
      assert.equal(first.code, C.OK, first.message);
      assert.deepEqual(first.sizes, [sizes.reduce((a, b) => a + b, 0)]);
      assert.equal(first.fetches.length, 2, JSON.stringify(first.fetches));
      assert.equal(first.fetches[0]?.body, "stream");
      assert.equal(first.fetches[0]?.outcome, "rejected");
      assert.match(first.fetches[0]?.error ?? "", /^TypeError/);
      assert.deepEqual(first.fetches[1], { body: "buffered", outcome: "response" });
      const second = await result(await start({ baseUrl: h1Base, method: "HalfDuplexCall", id: newId("h1"), requests: [{ responseParameters: [{ size: 5 }] }], gated: false }));
      assert.equal(second.code, C.OK, second.message);
      assert.deepEqual(second.sizes, [5]);
      assert.deepEqual(second.fetches, [{ body: "buffered", outcome: "response" }], "no second attempt at a request stream");
      const seenResponses = protocolsOf(h1Base);
      assert.ok(seenResponses.some((r) => r.type === "Fetch"), JSON.stringify(responses));
      assert.ok(seenResponses.every((r) => r.protocol === "http/1.1"), `HTTP version of the responses from ${h1Base}: ${JSON.stringify(seenResponses)}`);
    });
  });
}
