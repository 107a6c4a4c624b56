// Browser suite: the official grpc-web runtime in headless Chromium, on a page
// served from another origin than the gRPC server, in text
// (application/grpc-web-text) and binary (application/grpc-web+proto) mode.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import type { CallOutcome, CallSpec, GrpcWebFormat, StreamSpec, UnaryMethod } from "../browser/protocol.js";
import { bundlePage, launchChromium, type PageServer, startPageServer } from "../src/harness/browser.js";
import type { RunningServer } from "../src/harness/server-process.js";
import { selectedTargets } from "../src/harness/targets.js";
import {
  ECHO_INITIAL_KEY,
  ECHO_INITIAL_VALUE,
  ECHO_TRAILING_KEY,
  ECHO_TRAILING_VALUE_B64,
  LARGE_REQUEST_SIZE,
  LARGE_RESPONSE_SIZE,
  SHORT_DEADLINE_MS,
  SLEEP_US,
  SPECIAL_STATUS_MESSAGE,
  STATUS_MESSAGE,
  STREAMING_RESPONSE_SIZES,
  Status,
} from "../src/interop-constants.js";

const CASE_TIMEOUT = { timeout: 30_000 };

let pageServer: PageServer | undefined;
let browser: Browser | undefined;

before(async () => {
  pageServer = await startPageServer(await bundlePage());
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await pageServer?.close();
});

interface PageHandle {
  page: Page;
  console: string[];
}

async function openPage(): Promise<PageHandle> {
  assert.ok(browser && pageServer);
  const page = await browser.newPage();
  const console: string[] = [];
  page.on("console", (m) => console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console.push(`pageerror: ${e.message}`));
  await page.goto(`${pageServer.origin}/`, { timeout: 15_000 });
  await page.waitForFunction(() => typeof window.interop !== "undefined", undefined, { timeout: 15_000 });
  return { page, console };
}

function unary(h: PageHandle, method: UnaryMethod, spec: CallSpec): Promise<CallOutcome> {
  return h.page.evaluate(([m, s]) => window.interop.unary(m, s), [method, spec] as const);
}

function serverStreaming(h: PageHandle, spec: StreamSpec): Promise<CallOutcome> {
  return h.page.evaluate((s) => window.interop.serverStreaming(s), spec);
}

function assertOk(out: CallOutcome): void {
  assert.equal(out.code, Status.OK, `expected OK, got ${out.code} ${JSON.stringify(out.details)}`);
}

for (const target of selectedTargets()) {
  if (target.unavailable !== undefined) {
    test(`${target.name} is available`, () => assert.fail(target.unavailable));
    continue;
  }
  describe(target.name, { skip: target.skip }, () => {
    let server: RunningServer | undefined;
    let handle: PageHandle | undefined;

    before(async () => {
      assert.ok(pageServer);
      server = await target.start([pageServer.origin]);
      handle = await openPage();
    });
    after(async () => {
      await handle?.page.close();
      await server?.stop();
    });

    const h = () => {
      assert.ok(handle);
      return handle;
    };
    const base = (format: GrpcWebFormat): CallSpec => {
      assert.ok(server);
      return { baseUrl: server.url, format };
    };

    for (const format of ["text", "binary"] as const) {
      describe(`grpc-web ${format} mode (cross-origin)`, () => {
        test("empty_unary", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/EmptyCall", base(format));
          assertOk(out);
          assert.equal(out.messages.length, 1);
        });

        test("large_unary", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/UnaryCall", {
            ...base(format),
            request: { responseSize: LARGE_RESPONSE_SIZE, payloadSize: LARGE_REQUEST_SIZE },
          });
          assertOk(out);
          assert.deepEqual(out.messages, [{ size: LARGE_RESPONSE_SIZE, zero: true }]);
        });

        // Binary mode reads the XHR response as one ArrayBuffer, so messages
        // arrive together when the stream ends; the call still works.
        test("server_streaming", CASE_TIMEOUT, async () => {
          const out = await serverStreaming(h(), {
            ...base(format),
            request: { responseParameters: STREAMING_RESPONSE_SIZES.map((size) => ({ size })) },
          });
          assertOk(out);
          assert.deepEqual(
            out.messages,
            STREAMING_RESPONSE_SIZES.map((size) => ({ size, zero: true })),
          );
        });

        test("custom_metadata (UnaryCall)", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/UnaryCall", {
            ...base(format),
            request: { responseSize: LARGE_RESPONSE_SIZE, payloadSize: LARGE_REQUEST_SIZE },
            metadata: { [ECHO_INITIAL_KEY]: ECHO_INITIAL_VALUE, [ECHO_TRAILING_KEY]: ECHO_TRAILING_VALUE_B64 },
          });
          assertOk(out);
          assert.equal(out.headers?.[ECHO_INITIAL_KEY], ECHO_INITIAL_VALUE, "initial metadata via the 'metadata' event");
          assert.equal(out.trailers?.[ECHO_TRAILING_KEY], ECHO_TRAILING_VALUE_B64, "trailing metadata via the 'status' event");
        });

        test("custom_metadata (StreamingOutputCall)", CASE_TIMEOUT, async () => {
          const out = await serverStreaming(h(), {
            ...base(format),
            request: { responseParameters: [{ size: LARGE_RESPONSE_SIZE }], payloadSize: LARGE_REQUEST_SIZE },
            metadata: { [ECHO_INITIAL_KEY]: ECHO_INITIAL_VALUE, [ECHO_TRAILING_KEY]: ECHO_TRAILING_VALUE_B64 },
          });
          assertOk(out);
          assert.deepEqual(out.messages, [{ size: LARGE_RESPONSE_SIZE, zero: true }]);
          assert.equal(out.headers?.[ECHO_INITIAL_KEY], ECHO_INITIAL_VALUE, "initial metadata via the 'metadata' event");
          assert.equal(out.trailers?.[ECHO_TRAILING_KEY], ECHO_TRAILING_VALUE_B64, "trailing metadata via the 'status' event");
        });

        test("status_code_and_message (UnaryCall)", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/UnaryCall", {
            ...base(format),
            request: { responseStatus: { code: Status.UNKNOWN, message: STATUS_MESSAGE } },
          });
          assert.equal(out.code, Status.UNKNOWN);
          assert.equal(out.details, STATUS_MESSAGE);
        });

        test("status_code_and_message (StreamingOutputCall)", CASE_TIMEOUT, async () => {
          const out = await serverStreaming(h(), {
            ...base(format),
            request: { responseStatus: { code: Status.UNKNOWN, message: STATUS_MESSAGE } },
          });
          assert.equal(out.code, Status.UNKNOWN);
          assert.equal(out.details, STATUS_MESSAGE);
        });

        test("special_status_message", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/UnaryCall", {
            ...base(format),
            request: { responseStatus: { code: Status.UNKNOWN, message: SPECIAL_STATUS_MESSAGE } },
          });
          assert.equal(out.code, Status.UNKNOWN);
          assert.equal(out.details, SPECIAL_STATUS_MESSAGE);
        });

        test("unimplemented_method", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "TestService/UnimplementedCall", base(format));
          assert.equal(out.code, Status.UNIMPLEMENTED, `got ${out.code} ${JSON.stringify(out.details)}`);
        });

        test("unimplemented_service", CASE_TIMEOUT, async () => {
          const out = await unary(h(), "UnimplementedService/UnimplementedCall", base(format));
          assert.equal(out.code, Status.UNIMPLEMENTED, `got ${out.code} ${JSON.stringify(out.details)}`);
        });

        test("timeout_on_sleeping_server", CASE_TIMEOUT, async () => {
          const out = await serverStreaming(h(), {
            ...base(format),
            request: { responseParameters: [{ size: 1, intervalUs: SLEEP_US }] },
            deadlineMs: SHORT_DEADLINE_MS,
          });
          assert.equal(out.code, Status.DEADLINE_EXCEEDED, `got ${out.code} ${JSON.stringify(out.details)}`);
          assert.equal(out.messages.length, 0);
        });

        test(
          "cancel_after_first_response",
          {
            ...CASE_TIMEOUT,
            skip: format === "binary" ? "binary mode delivers no message before the response ends (XHR ArrayBuffer)" : false,
          },
          async () => {
            const out = await serverStreaming(h(), {
              ...base(format),
              request: {
                responseParameters: STREAMING_RESPONSE_SIZES.map((size, i) => ({ size, intervalUs: i === 0 ? 0 : SLEEP_US })),
              },
              cancelAfterFirst: true,
            });
            assert.deepEqual(out.messages, [{ size: STREAMING_RESPONSE_SIZES[0], zero: true }]);
            // grpc-web reports response headers ('metadata') when the XHR
            // completes, aborted or not; nothing else may follow a cancel.
            assert.deepEqual(
              out.eventsAfterCancel?.filter((e) => e !== "metadata"),
              [],
              "no data/status/error/end after stream.cancel()",
            );
          },
        );
      });
    }

    describe("CORS", () => {
      let closed: RunningServer | undefined;
      before(async () => {
        closed = await target.start([]);
      });
      after(async () => {
        await closed?.stop();
      });

      test("a server without --allow-origin for the page's origin fails the browser call", CASE_TIMEOUT, async (t) => {
        assert.ok(closed);
        const page = h();
        const seen = page.console.length;
        for (const format of ["text", "binary"] as const) {
          const out = await unary(page, "TestService/EmptyCall", { baseUrl: closed.url, format });
          t.diagnostic(`${format}: grpc-web reported code ${out.code} ${JSON.stringify(out.details)}`);
          assert.notEqual(out.code, Status.OK, `${format}: call must fail`);
          assert.equal(out.messages.length, 0, `${format}: no response message`);
        }
        const cors = page.console.slice(seen).filter((l) => /CORS/i.test(l));
        assert.ok(cors.length > 0, `Chromium reports a CORS block; console:\n${page.console.slice(seen).join("\n")}`);
      });
    });
  });
}
