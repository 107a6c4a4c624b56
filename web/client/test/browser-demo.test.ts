// The demo page (crates/gateway/src/assets/index.html, built by build:demo)
// against `weir demo`, same origin. The committed page is fulfilled at the
// server's `/` through playwright routing, so the test checks the committed
// file even when the weir binary embeds an older one.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { CLIENT_DIR, clientTargets, freePort, launch, type ServerUnderTest, startWeirDemo } from "./harness.js";

const weir = clientTargets().find((t) => t.isWeir);
const PAGE = readFileSync(resolve(CLIENT_DIR, "../../crates/gateway/src/assets/index.html"), "utf8");

describe("demo page on weir demo", { skip: weir === undefined ? "weir target not selected" : weir.skip }, () => {
  let browser: Browser | undefined;
  let sut: ServerUnderTest | undefined;
  let page: Page | undefined;
  const errors: string[] = [];
  before(async () => {
    assert.ok(weir);
    if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
    sut = await weir.start([]);
    browser = await launch();
    page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.route(`${sut.server.url}/`, (route) => route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: PAGE }));
    await page.goto(`${sut.server.url}/`);
  });
  after(async () => {
    await browser?.close();
    await sut?.server.stop();
    assert.deepEqual(errors, []);
  });

  const click = async (id: string, expect: RegExp) => {
    assert.ok(page);
    await page.click(`#${id}`);
    await page.waitForFunction(([i]) => !/^…?$/.test(document.getElementById(`${i}-out`)?.textContent ?? ""), [id], { timeout: 15_000 });
    const text = (await page.textContent(`#${id}-out`)) ?? "";
    assert.match(text, expect);
  };

  for (const [kind, format] of [["fetch", "binary"], ["xhr", "text"]] as const) {
    test(`every call type (${kind}, ${format})`, { timeout: 30_000 }, async () => {
      assert.ok(page);
      await page.selectOption("#kind", kind);
      await page.selectOption("#format", format);
      await click("unary", /got 1024 bytes/);
      await click("client", /server counted 15360 bytes/);
      await click("half", /answers of 10, 20, 30 bytes/);
    });
  }

  test("without --webtransport-listen the page says so (discovery 404)", { timeout: 30_000 }, async () => {
    assert.ok(page);
    await page.waitForFunction(() => /without WebTransport/.test(document.getElementById("duplex-note")?.textContent ?? ""), undefined, { timeout: 10_000 });
    assert.match((await page.textContent("#duplex-note")) ?? "", /--webtransport-listen/);
    assert.ok(await page.isDisabled("#duplex-start"));
  });

  test("server streaming: live counter, then cancel", { timeout: 30_000 }, async () => {
    assert.ok(page);
    await page.selectOption("#kind", "fetch");
    await page.click("#server");
    await page.waitForFunction(() => Number(document.getElementById("server-count")?.textContent) >= 3, undefined, { timeout: 10_000 });
    const seen = Number(await page.textContent("#server-count"));
    assert.ok(seen < 100, "the counter moves while the stream is open");
    await page.click("#server-stop");
    await page.waitForFunction(() => /error/.test(document.getElementById("server-out")?.textContent ?? ""), undefined, { timeout: 5_000 });
    assert.match((await page.textContent("#server-out")) ?? "", /cancel/i);
  });
});

describe("demo page on weir demo with WebTransport (the README command)", { skip: weir === undefined ? "weir target not selected" : weir.skip }, () => {
  let browser: Browser | undefined;
  let sut: ServerUnderTest | undefined;
  let page: Page | undefined;
  const errors: string[] = [];
  before(async () => {
    assert.ok(weir);
    if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
    // Like `weir demo --listen 127.0.0.1:8080 --webtransport-listen 127.0.0.1:4433` on free
    // ports: no --allow-origin, the WebTransport listener accepts the gateway's own pages.
    const port = await freePort();
    sut = await startWeirDemo([], { listen: `127.0.0.1:${port}`, webtransport: "127.0.0.1:0" });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await sut?.server.stop();
    assert.deepEqual(errors, []);
  });

  const texts = async (p: Page) =>
    JSON.stringify(await p.evaluate(() => ["duplex-note", "duplex-out", "duplex-log"].map((id) => document.getElementById(id)?.textContent)));
  const open = async (init?: () => void) => {
    assert.ok(browser && sut);
    const p = await browser.newPage();
    p.on("pageerror", (e) => errors.push(e.message));
    if (init !== undefined) await p.addInitScript(init);
    // The committed page, on the server's origin. Not through page.route as
    // above: Chromium fails WebTransport handshakes on a page whose requests
    // playwright intercepts.
    await p.goto(`${sut.server.url}/`);
    await p.setContent(PAGE);
    return p;
  };

  test("full duplex: answers arrive while the request stream is open; end, then cancel", { timeout: 30_000 }, async (t) => {
    page = await open();
    const p = page;
    t.after(async () => {
      if (!p.isClosed()) console.log(`demo page state: ${await texts(p)}\n${sut?.server.output().split("\n").filter((l) => /refused|origin/i.test(l)).join("\n")}`);
    });
    await page.waitForFunction(() => /WebTransport endpoint: https:/.test(document.getElementById("duplex-note")?.textContent ?? ""), undefined, { timeout: 10_000 });
    await page.click("#duplex-start");
    await page.waitForFunction(() => /call open/.test(document.getElementById("duplex-out")?.textContent ?? ""), undefined, { timeout: 10_000 });
    for (let i = 1; i <= 3; i++) {
      await page.click("#duplex-ping");
      await page.waitForFunction((n) => Number(document.getElementById("duplex-count")?.textContent) === n, i, { timeout: 5_000 });
    }
    assert.match((await page.textContent("#duplex-log")) ?? "", /answer 3: \d+ bytes/);
    await page.click("#duplex-end");
    await page.waitForFunction(() => /^done: 3 answers/.test(document.getElementById("duplex-out")?.textContent ?? ""), undefined, { timeout: 5_000 });
    // A second call, cancelled while open.
    await page.click("#duplex-start");
    await page.waitForFunction(() => /call open/.test(document.getElementById("duplex-out")?.textContent ?? ""), undefined, { timeout: 10_000 });
    await page.click("#duplex-ping");
    await page.waitForFunction(() => Number(document.getElementById("duplex-count")?.textContent) === 1, undefined, { timeout: 5_000 });
    await page.click("#duplex-cancel");
    await page.waitForFunction(() => /^error: .*cancel/i.test(document.getElementById("duplex-out")?.textContent ?? ""), undefined, { timeout: 5_000 });
    await page.close();
  });

  test("a browser without WebTransport gets a note, and the HTTP examples still work", { timeout: 30_000 }, async () => {
    const p = await open(() => {
      delete (window as { WebTransport?: unknown }).WebTransport;
    });
    await p.waitForFunction(() => /no WebTransport/.test(document.getElementById("duplex-note")?.textContent ?? ""), undefined, { timeout: 10_000 });
    assert.ok(await p.isDisabled("#duplex-start"));
    await p.click("#unary");
    await p.waitForFunction(() => /got 1024 bytes/.test(document.getElementById("unary-out")?.textContent ?? ""), undefined, { timeout: 10_000 });
    await p.close();
  });
});
