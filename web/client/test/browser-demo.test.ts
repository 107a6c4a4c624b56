// The demo page (crates/gateway/src/assets/index.html, built by build:demo)
// against `weir demo`, same origin. The committed page is fulfilled at the
// server's `/` through playwright routing, so the test checks the committed
// file even when the weir binary embeds an older one.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { CLIENT_DIR, clientTargets, launch, type ServerUnderTest } from "./harness.js";

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
