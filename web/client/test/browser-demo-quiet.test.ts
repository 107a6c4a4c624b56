// The demo page as a new user meets it, in every engine (engines.ts): `weir
// demo` started as the README says (WebTransport on, no --allow-origin), the
// page it serves loaded from it, every button clicked. Every call must
// succeed, and the browser must have nothing to complain about: no console
// error or warning, no uncaught error, no failed request and no HTTP error
// status — except the one server stream the test cancels on purpose — and
// the server must have refused nothing.
//
// How much of the console each engine lets the test see differs (the
// engine's `watchCoverage`, printed with its version): Chromium and Firefox
// report console messages, page errors and requests natively from the start
// of the navigation. WebKit's driver reports none of them, so there the page
// watches itself from a script run right after the load event (WATCHER in
// engines.ts): console.error/warn, uncaught errors, and the page's own fetch
// and XHR failures and error statuses from then on; the page's first run (its
// WebTransport detection) is loaded again in a standalone MiniBrowser that
// prints its console (console calls and uncaught errors, not requests; the
// test also checks the detection's visible outcome). Messages and requests of
// the engine itself are not seen in WebKit (the favicon: the server's answer
// to it is checked below, and the server log for every engine).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { type Engine, type EnginePage, engines, type PageLog } from "./engines.js";
import { CLIENT_DIR, clientTargets, freePort, serveFiles, startWeirDemo, type WeirUnderTest } from "./harness.js";

const weir = clientTargets().find((t) => t.isWeir);
const PAGE = readFileSync(resolve(CLIENT_DIR, "../../crates/gateway/src/assets/index.html"), "utf8");
const STREAM_PATH = "/grpc.testing.TestService/StreamingOutputCall";
/** How long a standalone browser gets to load a page and run it (Engine.consoleAtLoad). */
const FIRST_RUN_MS = 4000;

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

const weirSkip = weir === undefined ? "weir target not selected" : weir.skip;

for (const spec of engines()) {
  if (spec.unavailable !== undefined) {
    test(`${spec.name} is available`, () => assert.fail(spec.unavailable));
    continue;
  }
  describe(`${spec.name}: the demo page, every button, a quiet console`, { skip: weirSkip ?? spec.skip }, () => {
    let engine: Engine | undefined;
    let sut: WeirUnderTest | undefined;
    let page: EnginePage | undefined;

    before(async () => {
      assert.ok(weir);
      if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
      // The README's command on free ports: no --allow-origin, the page is the server's own.
      const port = await freePort();
      sut = await startWeirDemo([], { listen: `127.0.0.1:${port}`, webtransport: "127.0.0.1:0" });
      assert.equal(
        await (await fetch(`${sut.server.url}/`)).text(),
        PAGE,
        "the weir binary serves another demo page than the committed one: rebuild it (cargo build -p weir-gateway)",
      );
      engine = await spec.launch();
      console.log(`engine: ${engine.version}; what the test sees of the console: ${engine.watchCoverage}`);
      page = await engine.open(`${sut.server.url}/`, { watch: true });
    });
    after(async () => {
      await page?.close();
      await engine?.close();
      await sut?.server.stop();
    });

    const text = (id: string) => {
      assert.ok(page);
      return page.evaluate((i) => document.getElementById(i)?.textContent ?? "", id);
    };
    const waitText = (id: string, pattern: RegExp, timeoutMs = 10_000) => {
      assert.ok(page);
      return page.waitFor(([i, p]) => new RegExp(p).test(document.getElementById(i)?.textContent ?? ""), [id, pattern.source] as const, timeoutMs);
    };
    /** Clicks a button as a user would; a disabled (or missing) button fails the test. */
    const press = async (id: string) => {
      assert.ok(page);
      const state = await page.evaluate((i) => {
        const b = document.getElementById(i) as HTMLButtonElement | null;
        if (b === null) return "missing";
        if (b.disabled) return "disabled";
        b.click();
        return "clicked";
      }, id);
      assert.equal(state, "clicked", `#${id}`);
    };
    const set = async (id: string, value: string | boolean) => {
      assert.ok(page);
      const now = await page.evaluate(([i, v]) => {
        const el = document.getElementById(i) as HTMLInputElement | HTMLSelectElement;
        if (typeof v === "boolean") (el as HTMLInputElement).checked = v;
        else el.value = v;
        el.dispatchEvent(new Event("change", { bubbles: true }));
        return typeof v === "boolean" ? (el as HTMLInputElement).checked : el.value;
      }, [id, value] as const);
      assert.equal(now, value, `#${id}`);
    };
    /** Presses a call button and waits for its outcome (the page shows "…" meanwhile). */
    const call = async (id: string, expect: RegExp) => {
      assert.ok(page);
      await press(id);
      await page.waitFor((i) => !/^…?$/.test(document.getElementById(`${i}-out`)?.textContent ?? ""), id, 15_000);
      assert.match(await text(`${id}-out`), expect, `#${id}`);
    };

    // The test of the test: a page that does what a noisy page does, in this
    // engine; the log sees all of it (what this engine's log can see) and the
    // verdict fails.
    test("the log sees a noisy page, and the verdict fails on it", { timeout: 30_000 }, async () => {
      assert.ok(engine);
      const noisy = await serveFiles({
        "/": ["text/html", `<!doctype html><title>noisy</title><script>console.error("before load")</script><img src="/missing.png">`],
      });
      const p = await engine.open(`${noisy.origin}/`, { watch: true });
      try {
        await p.evaluate(async () => {
          console.error("provoked error");
          console.warn("provoked warning");
          setTimeout(() => {
            throw new Error("provoked uncaught");
          });
          void Promise.reject(new Error("provoked rejection"));
          await fetch("/missing-fetch");
          await fetch("http://127.0.0.1:1/refused").catch(() => {});
          await new Promise((r) => {
            const x = new XMLHttpRequest();
            x.open("GET", "/missing-xhr");
            x.onloadend = r;
            x.send();
          });
          await new Promise((r) => setTimeout(r, 200));
        }, undefined);
        await new Promise((r) => setTimeout(r, 300));
        const log = await p.log();
        const all = JSON.stringify(log);
        for (const c of [/provoked error/, /provoked warning/, /provoked uncaught/, /provoked rejection/]) {
          assert.ok(log.complaints.some((m) => c.test(m)), `${c.source} in ${all}`);
        }
        for (const path of ["/missing-fetch", "/missing-xhr"]) {
          assert.ok(log.errorStatus.some((r) => new URL(r.url).pathname === path && r.status === 404), `${path} 404 in ${all}`);
        }
        assert.ok(log.failed.some((f) => f.url.startsWith("http://127.0.0.1:1/")), `the refused request in ${all}`);
        if (engine.watchesFromStart) {
          assert.ok(log.complaints.some((m) => /before load/.test(m)), `the console before the load event in ${all}`);
          assert.ok(log.errorStatus.some((r) => new URL(r.url).pathname === "/missing.png"), `the engine's own request (an image) in ${all}`);
        }
        assert.throws(() => assertQuiet(log, {}));
        if (engine.consoleAtLoad !== undefined) {
          const atLoad = await engine.consoleAtLoad(`${noisy.origin}/`, FIRST_RUN_MS, /before load/);
          assert.ok(atLoad.some((l) => /before load/.test(l)), `the console before the load event, on its own: ${JSON.stringify(atLoad)}`);
        }
      } finally {
        await p.close();
        await noisy.close();
      }
    });

    test("the page's first run is quiet too, where the log starts at the load event", { timeout: 30_000 }, async (t) => {
      assert.ok(engine && sut);
      if (engine.consoleAtLoad === undefined) {
        t.skip(`${engine.name} watches from the start of the navigation`);
        return;
      }
      assert.deepEqual(await engine.consoleAtLoad(`${sut.server.url}/`, FIRST_RUN_MS), []);
    });

    test("every call succeeds and the browser reports nothing", { timeout: 90_000 }, async () => {
      assert.ok(page && sut && engine);
      // Every transport and format, twice each (a second click must not be the one that fails).
      for (const kind of ["fetch", "xhr"]) {
        for (const format of ["binary", "text"]) {
          await set("kind", kind);
          await set("format", format);
          for (let i = 0; i < 2; i++) {
            await call("unary", /^got 1024 bytes/);
            await call("client", /^server counted 15360 bytes/);
            await call("half", /^answers of 10, 20, 30 bytes/);
          }
        }
      }
      await set("heartbeat", true);
      await call("unary", /^got 1024 bytes/);
      await set("heartbeat", false);

      // Server streaming: once to the end (100 messages, 100 ms apart), once cancelled.
      await set("kind", "fetch");
      await press("server");
      await waitText("server-out", /^done: 100 messages/, 30_000);
      await press("server");
      await page.waitFor(() => Number(document.getElementById("server-count")?.textContent) >= 3, undefined, 10_000);
      await press("server-stop");
      await waitText("server-out", /^error: .*cancel/i);

      // Full duplex over WebTransport where the engine has it (README, Engines:
      // not WebKitGTK); without it the page says so and offers no button.
      const hasWebTransport = await page.evaluate(() => typeof (globalThis as { WebTransport?: unknown }).WebTransport === "function", undefined);
      assert.equal(hasWebTransport, engine.name !== "webkit", "WebTransport in this engine");
      if (hasWebTransport) {
        await waitText("duplex-note", /^WebTransport endpoint: https:/);
        for (const end of ["duplex-end", "duplex-cancel"]) {
          await press("duplex-start");
          await waitText("duplex-out", /call open/);
          for (let i = 1; i <= 2; i++) {
            await press("duplex-ping");
            await page.waitFor((n) => Number(document.getElementById("duplex-count")?.textContent) === n, i, 5_000);
          }
          await press(end);
          await waitText("duplex-out", end === "duplex-end" ? /^done: 2 answers/ : /^error: .*cancel/i);
        }
      } else {
        await waitText("duplex-note", /no WebTransport/);
        assert.ok(await page.evaluate(() => (document.getElementById("duplex-start") as HTMLButtonElement).disabled, undefined), "#duplex-start disabled");
      }

      // The command-line examples name this server.
      const host = new URL(sut.server.url).host;
      assert.ok((await page.evaluate(() => document.querySelector("pre")?.textContent ?? "", undefined)).includes(`weir call ${host} `), "weir call examples for this server");
      await new Promise((r) => setTimeout(r, 500)); // late console messages
      assertQuiet(await page.log(), { [STREAM_PATH]: 1 });
      // Nor has the server refused anything the page asked for.
      assert.deepEqual(sut.server.output().split("\n").filter((l) => /refused|WARN|ERROR/.test(l)), []);
    });
  });
}

describe("the demo server and /favicon.ico", { skip: weirSkip }, () => {
  test("a browser that asks for /favicon.ico anyway gets 204, and the server does not log it", async () => {
    assert.ok(weir);
    if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
    const sut = await startWeirDemo([]);
    try {
      const res = await fetch(`${sut.server.url}/favicon.ico`);
      assert.equal(res.status, 204);
      assert.deepEqual(sut.server.output().split("\n").filter((l) => /favicon/.test(l)), []);
    } finally {
      await sut.server.stop();
    }
  });
});
