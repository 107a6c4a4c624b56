// The demo page as a new user meets it: `weir demo` started as the README
// says (WebTransport on, no --allow-origin), the page it serves loaded from it,
// every button clicked. Every call must succeed, and the browser must have
// nothing to complain about: no console error or warning, no uncaught error, no
// failed request and no HTTP error status — except the one server stream the
// test cancels on purpose.
//
// What is engine-specific lives in `launch` and `watch`; the verdict is one
// function, `assertQuiet`, for porting to other engines.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { CLIENT_DIR, clientTargets, freePort, launch, startWeirDemo, type WeirUnderTest } from "./harness.js";

const weir = clientTargets().find((t) => t.isWeir);
const PAGE = readFileSync(resolve(CLIENT_DIR, "../../crates/gateway/src/assets/index.html"), "utf8");

/** What a page did that a user (or their console) would notice. */
interface PageLog {
  /** Console messages of type error or warning, and uncaught errors. */
  complaints: string[];
  /** Requests that failed at the network level: URL and the engine's reason. */
  failed: { url: string; reason: string }[];
  /** Responses with an HTTP status of 400 or more. */
  errorStatus: { url: string; status: number }[];
}

function watch(page: Page): PageLog {
  const log: PageLog = { complaints: [], failed: [], errorStatus: [] };
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log.complaints.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => log.complaints.push(`uncaught: ${e.message}`));
  page.on("requestfailed", (r) => log.failed.push({ url: r.url(), reason: r.failure()?.errorText ?? "?" }));
  page.on("response", (r) => {
    if (r.status() >= 400) log.errorStatus.push({ url: r.url(), status: r.status() });
  });
  return log;
}

/**
 * The verdict: nothing went wrong but the requests the test aborted itself
 * (`aborted`: how many requests to each path the user cancelled).
 */
function assertQuiet(log: PageLog, aborted: Record<string, number>): void {
  assert.deepEqual(log.complaints, [], "console errors or warnings, or uncaught errors");
  assert.deepEqual(log.errorStatus, [], "responses with an HTTP error status");
  const unexpected = log.failed.filter((f) => !(new URL(f.url).pathname in aborted));
  assert.deepEqual(unexpected, [], "failed requests");
  for (const [path, n] of Object.entries(aborted)) {
    // At most: whether an aborted request counts as failed differs between engines.
    const seen = log.failed.filter((f) => new URL(f.url).pathname === path).length;
    assert.ok(seen <= n, `${seen} failed requests to ${path}, ${n} cancelled by the test: ${JSON.stringify(log.failed)}`);
  }
}

describe("the demo page, every button, a quiet console", { skip: weir === undefined ? "weir target not selected" : weir.skip }, () => {
  let browser: Browser | undefined;
  let sut: WeirUnderTest | undefined;
  let page: Page | undefined;
  let log: PageLog | undefined;

  before(async () => {
    assert.ok(weir);
    if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
    // The README's command on free ports: no --allow-origin, the page is the server's own.
    const port = await freePort();
    sut = await startWeirDemo([], { listen: `127.0.0.1:${port}`, webtransport: "127.0.0.1:0" });
    browser = await launch();
    page = await browser.newPage();
    log = watch(page);
    const response = await page.goto(`${sut.server.url}/`);
    assert.equal(
      await response?.text(),
      PAGE,
      "the weir binary serves another demo page than the committed one: rebuild it (cargo build -p weir-gateway)",
    );
  });
  after(async () => {
    await browser?.close();
    await sut?.server.stop();
  });

  const click = async (id: string, expect: RegExp) => {
    assert.ok(page);
    await page.click(`#${id}`);
    await page.waitForFunction(([i]) => !/^…?$/.test(document.getElementById(`${i}-out`)?.textContent ?? ""), [id], { timeout: 15_000 });
    assert.match((await page.textContent(`#${id}-out`)) ?? "", expect, `#${id}`);
  };
  const waitText = async (id: string, pattern: RegExp, timeout = 10_000) => {
    assert.ok(page);
    await page.waitForFunction(([i, p]) => new RegExp(p).test(document.getElementById(i)?.textContent ?? ""), [id, pattern.source] as const, { timeout });
  };

  test("every call succeeds and the browser reports nothing", { timeout: 90_000 }, async () => {
    assert.ok(page && log && sut);
    // Every transport and format, twice each (a second click must not be the one that fails).
    for (const kind of ["fetch", "xhr"]) {
      for (const format of ["binary", "text"]) {
        await page.selectOption("#kind", kind);
        await page.selectOption("#format", format);
        for (let i = 0; i < 2; i++) {
          await click("unary", /^got 1024 bytes/);
          await click("client", /^server counted 15360 bytes/);
          await click("half", /^answers of 10, 20, 30 bytes/);
        }
      }
    }
    await page.check("#heartbeat");
    await click("unary", /^got 1024 bytes/);
    await page.uncheck("#heartbeat");

    // Server streaming: once to the end (100 messages, 100 ms apart), once cancelled.
    await page.selectOption("#kind", "fetch");
    await page.click("#server");
    await waitText("server-out", /^done: 100 messages/, 30_000);
    await page.click("#server");
    await page.waitForFunction(() => Number(document.getElementById("server-count")?.textContent) >= 3, undefined, { timeout: 10_000 });
    await page.click("#server-stop");
    await waitText("server-out", /^error: .*cancel/i);

    // Full duplex over WebTransport: a call to its end, and one cancelled.
    await waitText("duplex-note", /^WebTransport endpoint: https:/);
    for (const end of ["duplex-end", "duplex-cancel"]) {
      await page.click("#duplex-start");
      await waitText("duplex-out", /call open/);
      for (let i = 1; i <= 2; i++) {
        await page.click("#duplex-ping");
        await page.waitForFunction((n) => Number(document.getElementById("duplex-count")?.textContent) === n, i, { timeout: 5_000 });
      }
      await page.click(`#${end}`);
      await waitText("duplex-out", end === "duplex-end" ? /^done: 2 answers/ : /^error: .*cancel/i);
    }

    // The command-line examples name this server.
    assert.match((await page.textContent("pre")) ?? "", new RegExp(`weir call ${new URL(sut.server.url).host.replace(/\./g, "\\.")} `));
    await page.waitForTimeout(500); // late console messages
    assertQuiet(log, { "/grpc.testing.TestService/StreamingOutputCall": 1 });
    // Nor has the server refused anything the page asked for.
    assert.deepEqual(sut.server.output().split("\n").filter((l) => /refused|WARN|ERROR/.test(l)), []);
  });

  test("a browser that asks for /favicon.ico anyway gets 204, and the server does not log it", async () => {
    assert.ok(sut);
    const res = await fetch(`${sut.server.url}/favicon.ico`);
    assert.equal(res.status, 204);
    assert.deepEqual(sut.server.output().split("\n").filter((l) => /favicon/.test(l)), []);
  });
});
