// Service workers: the client runs inside one (no XHR, no window), and a
// page's streaming call that passes through a worker's
// respondWith(fetch(event.request)) still streams incrementally and cancels.
// Every engine runs all of it (engines.ts), against both servers in Chromium
// and against weir demo in Firefox and WebKit.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Engine, type EnginePage, engines } from "./engines.js";
import { bundle, clientTargets, html, type ServerUnderTest, serveFiles, type StaticServer } from "./harness.js";

interface StreamOutcome {
  code: number;
  times: number[];
  endAt: number;
}
interface Suite {
  ready(): Promise<boolean>;
  stream(baseUrl: string, count: number, gapMs: number, cancelAfter?: number): Promise<StreamOutcome>;
  passedThrough(): Promise<number>;
  callInWorker(baseUrl: string, format: string): Promise<{ code: number; message?: string; sizes?: number[]; unary?: number; hasXhr: boolean; hasWindow: boolean }>;
}
declare global {
  interface Window {
    swSuite: Suite;
  }
}

let pages: StaticServer | undefined;

before(async () => {
  const sw = (await bundle("browser/sw.ts", false)).replace(/^export\s*\{\s*\};?\s*$/m, "");
  pages = await serveFiles({
    "/": ["text/html", html("/sw-page.js")],
    "/sw-page.js": ["text/javascript", await bundle("browser/sw-page.ts")],
    "/sw.js": ["text/javascript", sw],
  });
});
after(async () => {
  await pages?.close();
});

for (const spec of engines()) {
  if (spec.unavailable !== undefined) {
    test(`${spec.name} is available`, () => assert.fail(spec.unavailable));
    continue;
  }
  describe(spec.name, { skip: spec.skip }, () => {
    let engine: Engine | undefined;
    before(async () => {
      engine = await spec.launch();
    });
    after(async () => {
      await engine?.close();
    });

  for (const target of clientTargets()) {
    if (target.unavailable !== undefined) {
      test(`${target.name} is available`, () => assert.fail(target.unavailable));
      continue;
    }
    if (!spec.full && !target.isWeir) continue;
    describe(`service worker, ${target.name}`, { skip: target.skip }, () => {
      let sut: ServerUnderTest | undefined;
      let page: EnginePage | undefined;
      before(async () => {
        assert.ok(pages && engine);
        sut = await target.start([pages.origin]);
        page = await engine.open(`${pages.origin}/`);
        await page.waitFor(() => typeof window.swSuite !== "undefined", undefined, 15_000);
        await page.evaluate(() => window.swSuite.ready(), undefined);
      });
      after(async () => {
        const errors = (await page?.errors()) ?? [];
        await page?.close();
        await sut?.server.stop();
        assert.deepEqual(errors, [], "no uncaught errors on the page");
      });
      const url = () => {
        assert.ok(sut);
        return sut.server.url;
      };

      for (const format of ["binary", "text"]) {
        test(`the client works inside a service worker (${format})`, { timeout: 20_000 }, async () => {
          assert.ok(page);
          const out = await page.evaluate(([u, f]) => window.swSuite.callInWorker(u, f), [url(), format] as const);
          assert.equal(out.code, 0, out.message);
          assert.deepEqual(out.sizes, [1, 2, 3]);
          assert.equal(out.unary, 10);
          assert.equal(out.hasXhr, false);
          assert.equal(out.hasWindow, false);
        });
      }

      test("a call through respondWith(fetch(event.request)) streams incrementally", { timeout: 20_000 }, async () => {
        assert.ok(page);
        const before = await page.evaluate(() => window.swSuite.passedThrough(), undefined);
        const out = await page.evaluate((u) => window.swSuite.stream(u, 4, 300), url());
        assert.equal(out.code, 0);
        assert.equal(out.times.length, 4);
        // Messages 300 ms apart arrive 300 ms apart, not all at the end.
        const [first = 0, , , last = 0] = out.times;
        assert.ok(last - first >= 700, `arrival times ${out.times.join(", ")}`);
        assert.ok(first < 250, `first message at ${first} ms`);
        assert.equal(await page.evaluate(() => window.swSuite.passedThrough(), undefined), before + 1, "the call went through the worker");
      });

      test("a call through the worker still cancels (server saw it where it can tell)", { timeout: 20_000 }, async () => {
        assert.ok(page);
        const c0 = (await sut?.cancellations?.()) ?? 0;
        const out = await page.evaluate((u) => window.swSuite.stream(u, 50, 200, 2), url());
        assert.equal(out.code, 1, JSON.stringify(out));
        assert.equal(out.times.length, 2);
        if (sut?.cancellations !== undefined) {
          let now = c0;
          for (let i = 0; i < 60 && now <= c0; i++) {
            await new Promise((r) => setTimeout(r, 50));
            now = await sut.cancellations();
          }
          assert.ok(now > c0, "weir counted the cancellation");
        }
      });
    });
  }
  });
}
