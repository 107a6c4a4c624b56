// The browser engines the client's matrix runs in, behind one small driver
// interface (open a page, evaluate, wait, close), so each test is written
// once and runs in every engine:
//
//   chromium  Debian's `chromium`, through playwright-core (CDP);
//   firefox   Debian's `firefox-esr`, through puppeteer-core over WebDriver
//             BiDi (no geckodriver; nothing downloaded);
//   webkit    WebKitGTK's MiniBrowser, through `WebKitWebDriver` (Debian's
//             webkit2gtk-driver) as a WebDriver remote driven by
//             selenium-webdriver, under an Xvfb this harness starts.
//
// scripts/ensure-browsers installs them. WEIR_ENGINES (comma-separated,
// default all three) picks engines; an engine that is not installed is
// skipped, or fails under WEIR_REQUIRE=1. CHROMIUM_PATH, FIREFOX_PATH,
// WEBKIT_DRIVER_PATH (and WEBKIT_BROWSER_PATH for MiniBrowser) override
// where each is found.
//
// Page errors are collected inside the page (see PRELUDE in harness.ts), the
// same way in every engine: WebKit's driver has no console or error events.
// `open(url, { watch: true })` also keeps a PageLog of what a user's console
// would show, natively where the driver can (Chromium, Firefox) and from a
// script installed after the load event in WebKit (see WATCHER: what it does
// not see is listed there and in each Engine's `watchCoverage`), with the
// page's first run in WebKit checked by `consoleAtLoad`.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Browser as PwBrowser, BrowserContext as PwContext } from "playwright-core";
import { chromium } from "playwright-core";
import type { WebDriver } from "selenium-webdriver";
import { chromiumPath } from "../../interop/src/harness/browser.js";
import { freePort } from "./harness.js";

export type EngineName = "chromium" | "firefox" | "webkit";

export interface EnginePage {
  /**
   * Runs `fn(arg)` in the page and returns its (awaited, JSON-friendly)
   * result. `fn` is sent as source text: it must not close over anything.
   * Several evaluations may be pending at once.
   */
  evaluate<R, A>(fn: (arg: A) => R | Promise<R>, arg: A): Promise<R>;
  /** Waits until `fn(arg)` is truthy in the page (polled). */
  waitFor<A>(fn: (arg: A) => unknown, arg: A, timeoutMs?: number): Promise<void>;
  /** Uncaught errors and unhandled rejections the page recorded so far. */
  errors(): Promise<string[]>;
  /** What the page did so far that its console would show (pages opened with `watch`). */
  log(): Promise<PageLog>;
  close(): Promise<void>;
}

/** What a page did that a user (or their console) would notice. */
export interface PageLog {
  /** Console messages of level error or warning, and uncaught errors / unhandled rejections. */
  complaints: string[];
  /** Requests that failed at the network level (including aborted ones): URL and the engine's reason. */
  failed: { url: string; reason: string }[];
  /** Responses with an HTTP status of 400 or more. */
  errorStatus: { url: string; status: number }[];
}

export interface OpenOptions {
  /** Keep a PageLog from the start of the navigation (from its load event in WebKit). */
  watch?: boolean;
}

export interface LaunchOptions {
  /** Accept any TLS certificate (Chromium only; the upload suite). */
  ignoreCertificateErrors?: boolean;
}

export interface Engine {
  readonly name: EngineName;
  /** e.g. "Chromium 156.0.8078.114". */
  readonly version: string;
  /** What `EnginePage.log` sees in this engine, in a sentence. */
  readonly watchCoverage: string;
  /** Whether `EnginePage.log` sees the page from the start of its navigation (else from its load event). */
  readonly watchesFromStart: boolean;
  /**
   * Where the watch starts late (WebKit): console errors and warnings (and
   * uncaught errors) that a fresh browser of this engine, run on its own
   * outside the driver, prints while it loads `url` and runs it for
   * `settleMs` — or until a line matches `until`.
   */
  consoleAtLoad?(url: string, settleMs: number, until?: RegExp): Promise<string[]>;
  /** Opens `url` in a fresh page (its own storage, service workers and cookies). */
  open(url: string, opts?: OpenOptions): Promise<EnginePage>;
  close(): Promise<void>;
}

export interface EngineSpec {
  readonly name: EngineName;
  /** Whether this engine runs the whole matrix (Chromium) or the representative subset. */
  readonly full: boolean;
  /** Set when the engine is not installed (a failure under WEIR_REQUIRE=1). */
  readonly unavailable?: string;
  /** Set when the engine is not installed or not selected (a skip). */
  readonly skip?: string;
  launch(opts?: LaunchOptions): Promise<Engine>;
}

const ALL: readonly EngineName[] = ["chromium", "firefox", "webkit"];

/** The engines WEIR_ENGINES selects (default all), each with how to launch it. */
export function engines(): EngineSpec[] {
  const wanted = (process.env.WEIR_ENGINES ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const w of wanted) if (!ALL.includes(w as EngineName)) throw new Error(`WEIR_ENGINES: unknown engine ${w} (known: ${ALL.join(", ")})`);
  const require = process.env.WEIR_REQUIRE === "1";
  return ALL.filter((n) => wanted.length === 0 || wanted.includes(n)).map((name) => {
    const missing = missingReason(name);
    const base = { name, full: name === "chromium", launch: (o?: LaunchOptions) => LAUNCH[name](o ?? {}) };
    if (missing === undefined) return base;
    return require ? { ...base, unavailable: `${missing} (WEIR_REQUIRE=1)` } : { ...base, skip: missing };
  });
}

function missingReason(name: EngineName): string | undefined {
  try {
    if (name === "chromium") chromiumPath();
    else if (name === "firefox") firefoxPath();
    else {
      webkitDriverPath();
      miniBrowserPath();
      xvfbPath();
    }
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function firstExisting(what: string, envVar: string, candidates: string[], hint: string): string {
  const env = process.env[envVar];
  if (env !== undefined && env !== "") {
    if (!existsSync(env)) throw new Error(`${envVar}=${env} does not exist`);
    return env;
  }
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) throw new Error(`no ${what} found (tried ${candidates.join(", ")}); run ${hint} or set ${envVar}`);
  return found;
}

export const firefoxPath = () => firstExisting("Firefox", "FIREFOX_PATH", ["/usr/bin/firefox-esr", "/usr/bin/firefox"], "scripts/ensure-browsers");
export const webkitDriverPath = () => firstExisting("WebKitWebDriver", "WEBKIT_DRIVER_PATH", ["/usr/bin/WebKitWebDriver"], "scripts/ensure-browsers");
export const xvfbPath = () => firstExisting("Xvfb", "XVFB_PATH", ["/usr/bin/Xvfb"], "scripts/ensure-browsers");
export function miniBrowserPath(): string {
  // libwebkit2gtk-4.1-0 puts MiniBrowser in its library directory, e.g.
  // /usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser.
  const libs = existsSync("/usr/lib") ? readdirSync("/usr/lib").map((d) => resolve("/usr/lib", d, "webkit2gtk-4.1", "MiniBrowser")) : [];
  return firstExisting("MiniBrowser", "WEBKIT_BROWSER_PATH", [...libs, "/usr/lib/webkit2gtk-4.1/MiniBrowser"], "scripts/ensure-browsers");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` in the page until truthy; shared by the drivers. */
async function pollUntil<A>(page: Pick<EnginePage, "evaluate">, fn: (arg: A) => unknown, arg: A, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const src = fn.toString();
  for (;;) {
    const okNow = await page.evaluate(([s, a]) => Boolean(new Function("a", `return (${s})(a)`)(a)), [src, arg] as const);
    if (okNow) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${src}`);
    await sleep(50);
  }
}

const notWatched = (): Promise<PageLog> => Promise.reject(new Error("this page was opened without { watch: true }"));

const emptyLog = (): PageLog => ({ complaints: [], failed: [], errorStatus: [] });

/**
 * WebKit's watcher: WebKitWebDriver (classic WebDriver) reports no console
 * messages, page errors or network events, has no log endpoint and no
 * init scripts, and MiniBrowser's console-to-stdout setting does not reach the
 * windows automation opens. So the page watches itself, from a script run
 * right after the load event, into `window.weirPageLog`. (Firefox runs it
 * too, as a preload script from the start, for the requests BiDi does not
 * report.)
 *
 *  - sees: console.error / console.warn calls by page scripts, uncaught errors
 *    and unhandled rejections, and every fetch() and XMLHttpRequest the page
 *    starts — network failures (rejected fetch; XHR error, abort, timeout) and
 *    HTTP statuses of 400 or more;
 *  - does not see: anything before the load event (the page's first run,
 *    e.g. its feature detection: Engine.consoleAtLoad covers its console
 *    calls and uncaught errors, not its requests); messages the engine logs itself (e.g.
 *    "Failed to load resource", security or CSP messages), which bypass the
 *    console object; requests the engine makes on its own (favicon, images,
 *    scripts: WebKit's resource timing has no status and no entry for a
 *    failed load); a fetch response body that fails after its headers.
 */
export const WATCHER = `(() => {
  if (window.weirPageLog) return;
  const log = (window.weirPageLog = { complaints: [], failed: [], errorStatus: [] });
  const text = (v) => (v instanceof Error ? v.name + ": " + v.message : typeof v === "object" ? (() => { try { return JSON.stringify(v); } catch { return String(v); } })() : String(v));
  for (const [level, name] of [["error", "error"], ["warn", "warning"]]) {
    const original = console[level];
    console[level] = function (...args) {
      log.complaints.push("console." + name + ": " + args.map(text).join(" "));
      return original.apply(this, args);
    };
  }
  addEventListener("error", (e) => log.complaints.push("uncaught: " + text(e.error ?? e.message)));
  addEventListener("unhandledrejection", (e) => log.complaints.push("uncaught: " + text(e.reason)));
  const abs = (u) => { try { return new URL(u, location.href).href; } catch { return String(u); } };
  const fetch = window.fetch;
  window.fetch = function (input, init) {
    const url = abs(input instanceof Request ? input.url : input);
    return fetch.apply(this, arguments).then(
      (r) => { if (r.status >= 400) log.errorStatus.push({ url, status: r.status }); return r; },
      (e) => { log.failed.push({ url, reason: (e && e.name) || String(e) }); throw e; },
    );
  };
  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  const urls = new WeakMap();
  XMLHttpRequest.prototype.open = function (method, url) {
    urls.set(this, abs(url));
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    const url = urls.get(this) ?? "?";
    for (const reason of ["error", "abort", "timeout"]) this.addEventListener(reason, () => log.failed.push({ url, reason }));
    this.addEventListener("load", () => { if (this.status >= 400) log.errorStatus.push({ url, status: this.status }); });
    return send.apply(this, arguments);
  };
})();`;

const readErrors = (page: Pick<EnginePage, "evaluate">) =>
  page.evaluate(() => ((window as { weirPageErrors?: string[] }).weirPageErrors ?? []).slice(), undefined).catch((e: unknown) => [`could not read the page's errors: ${String(e)}`]);

// ---- Chromium: playwright-core over CDP -------------------------------------

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--enable-precise-memory-info",
  "--js-flags=--expose-gc",
];

async function launchChromium(o: LaunchOptions): Promise<Engine> {
  const browser: PwBrowser = await chromium.launch({
    executablePath: chromiumPath(),
    args: [...CHROMIUM_ARGS, ...(o.ignoreCertificateErrors === true ? ["--ignore-certificate-errors"] : [])],
    timeout: 30_000,
  });
  return {
    name: "chromium",
    version: `Chromium ${browser.version()}`,
    watchesFromStart: true,
    watchCoverage: "everything, natively (CDP): console errors and warnings, also the engine's own; uncaught errors; every failed request and HTTP status ≥ 400, also the engine's own requests, from the start of the navigation",
    async open(url, opts = {}) {
      const ctx: PwContext = await browser.newContext();
      const page = await ctx.newPage();
      let log: PageLog | undefined;
      if (opts.watch === true) {
        const l = (log = emptyLog());
        page.on("console", (m) => {
          if (m.type() === "error" || m.type() === "warning") l.complaints.push(`console.${m.type()}: ${m.text()}`);
        });
        page.on("pageerror", (e) => l.complaints.push(`uncaught: ${e.stack ?? e.message}`));
        page.on("requestfailed", (r) => l.failed.push({ url: r.url(), reason: r.failure()?.errorText ?? "?" }));
        page.on("response", (r) => {
          if (r.status() >= 400) l.errorStatus.push({ url: r.url(), status: r.status() });
        });
      }
      await page.goto(url);
      const p: EnginePage = {
        evaluate: (fn, arg) => page.evaluate(fn as never, arg) as never,
        waitFor: async (fn, arg, timeoutMs = 15_000) => {
          await page.waitForFunction(fn as never, arg, { timeout: timeoutMs });
        },
        errors: () => readErrors(p),
        log: log === undefined ? notWatched : async () => structuredClone(log),
        close: () => ctx.close(),
      };
      return p;
    },
    close: () => browser.close(),
  };
}

// ---- Firefox: puppeteer-core over WebDriver BiDi ----------------------------

async function launchFirefox(_o: LaunchOptions): Promise<Engine> {
  const puppeteer = (await import("puppeteer-core")).default;
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: firefoxPath(),
    headless: true,
    timeout: 30_000,
    // Nothing else: puppeteer makes a fresh profile (so running as root is
    // fine) with prefs that switch off updates and telemetry.
  });
  const version = (await browser.version()).replace(/^firefox\//i, "Firefox ");
  return {
    name: "firefox",
    version,
    watchesFromStart: true,
    watchCoverage:
      "from the start of the navigation: natively (WebDriver BiDi log and network events) console errors and warnings, also some of the engine's own, uncaught errors, HTTP statuses ≥ 400 and requests that fail once sent, also the engine's own; plus, from a preload script, the page's fetch/XHR calls that fail before they are sent (no BiDi event)",
    async open(url, opts = {}) {
      const ctx = await browser.createBrowserContext();
      const page = await ctx.newPage();
      let log: PageLog | undefined;
      if (opts.watch === true) {
        const l = (log = emptyLog());
        // BiDi reports no network event for a request that fails before it
        // is sent (e.g. connection refused): the watcher, installed before
        // the page's scripts run, adds the page's own failed fetch/XHR calls.
        await page.evaluateOnNewDocument(WATCHER);
        page.on("console", (m) => {
          if (m.type() === "error" || m.type() === "warn") l.complaints.push(`console.${m.type() === "warn" ? "warning" : "error"}: ${m.text()}`);
        });
        page.on("pageerror", (e) => l.complaints.push(`uncaught: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`));
        page.on("requestfailed", (r) => l.failed.push({ url: r.url(), reason: r.failure()?.errorText ?? "?" }));
        page.on("response", (r) => {
          if (r.status() >= 400) l.errorStatus.push({ url: r.url(), status: r.status() });
        });
      }
      await page.goto(url);
      const p: EnginePage = {
        evaluate: (fn, arg) => page.evaluate(fn as never, arg) as never,
        waitFor: (fn, arg, timeoutMs = 15_000) => pollUntil(p, fn, arg, timeoutMs),
        errors: () => readErrors(p),
        log:
          log === undefined
            ? notWatched
            : async () => {
                assert(log !== undefined);
                const own = await p.evaluate(() => (window as { weirPageLog?: PageLog }).weirPageLog?.failed ?? [{ url: "?", reason: "the page lost its watcher" }], undefined);
                return { ...structuredClone(log), failed: mergeFailed(log.failed, own) };
              },
        close: () => ctx.close(),
      };
      return p;
    },
    close: () => browser.close(),
  };
}

/**
 * The engine's failed requests plus those only the page saw, each failure
 * once: a page-side failure of a URL the engine reported as often is the same
 * request seen twice (an aborted fetch).
 */
function mergeFailed(engine: PageLog["failed"], page: PageLog["failed"]): PageLog["failed"] {
  const unmatched = new Map<string, number>();
  for (const f of engine) unmatched.set(f.url, (unmatched.get(f.url) ?? 0) + 1);
  const out = [...engine];
  for (const f of page) {
    const n = unmatched.get(f.url) ?? 0;
    if (n > 0) unmatched.set(f.url, n - 1);
    else out.push(f);
  }
  return out;
}

// ---- WebKitGTK: WebKitWebDriver (classic WebDriver) under Xvfb ---------------

/** Children still running: killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

/** A child process we wait for when stopping it (killed orphans linger as zombies here). */
function child(proc: ChildProcess) {
  running.add(proc);
  const exited = new Promise<void>((ok) => {
    if (proc.exitCode !== null || proc.signalCode !== null) ok();
    else proc.once("exit", () => ok());
  });
  void exited.then(() => running.delete(proc));
  return {
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Starts Xvfb on a display it picks itself (-displayfd); returns ":N". */
async function startXvfb(): Promise<{ display: string; stop(): Promise<void> }> {
  const proc = spawn(xvfbPath(), ["-displayfd", "3", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  const c = child(proc);
  let err = "";
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const display = await new Promise<string>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`Xvfb printed no display within 10 s: ${err}`)), 10_000);
    (proc.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) {
        clearTimeout(timer);
        ok(`:${out.trim()}`);
      }
    });
    void c.exited.then(() => fail(new Error(`Xvfb exited: ${err}`)));
  });
  return { display, stop: c.stop };
}

async function launchWebKit(_o: LaunchOptions): Promise<Engine> {
  const { Builder, Capabilities } = await import("selenium-webdriver");
  const xvfb = await startXvfb();
  const port = await freePort();
  const proc = spawn(webkitDriverPath(), [`--port=${port}`, "--host=127.0.0.1"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DISPLAY: xvfb.display } });
  const driverProc = child(proc);
  let driverOut = "";
  proc.stdout?.on("data", (d: Buffer) => (driverOut += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (driverOut += d.toString()));
  const server = `http://127.0.0.1:${port}`;
  const stopAll = async () => {
    await driverProc.stop();
    await xvfb.stop();
  };
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${server}/status`)).ok) break;
      } catch {
        // not listening yet
      }
      if (i > 100) throw new Error(`WebKitWebDriver did not answer on ${server}: ${driverOut}`);
      await sleep(100);
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  const caps = new Capabilities({
    browserName: "MiniBrowser",
    "webkitgtk:browserOptions": { binary: miniBrowserPath(), args: ["--automation"] },
  });
  let driver: WebDriver;
  try {
    // WebKitWebDriver allows one session: pages are windows of it.
    driver = await new Builder().usingServer(server).withCapabilities(caps).build();
  } catch (e) {
    await stopAll();
    throw e;
  }
  const version = `WebKitGTK ${String((await driver.getCapabilities()).get("browserVersion") ?? "?")}`;
  await driver.manage().setTimeouts({ script: 30_000, pageLoad: 30_000 });
  const home = await driver.getWindowHandle();
  let current = home;
  // Classic WebDriver runs one command at a time and on the current window:
  // commands go through one queue, each switching to its page's window first.
  let queue: Promise<unknown> = Promise.resolve();
  const onWindow = <T>(handle: string, f: () => Promise<T>): Promise<T> => {
    const run = queue.then(async () => {
      if (current !== handle) {
        await driver.switchTo().window(handle);
        current = handle;
      }
      return f();
    });
    queue = run.catch(() => {});
    return run;
  };
  let evalSeq = 0;
  return {
    // MiniBrowser's console-to-stdout setting does not reach the windows
    // automation opens, but it works for a MiniBrowser of its own: that one
    // covers the page's first run, which the WATCHER cannot (it prints console
    // calls and uncaught errors, not the engine's network messages).
    async consoleAtLoad(url, settleMs, until) {
      // A profile of its own (not --private: its windows ignore the setting).
      const profile = mkdtempSync(join(tmpdir(), "weir-minibrowser-"));
      const mb = spawn(miniBrowserPath(), ["--enable-write-console-messages-to-stdout=true", url], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, DISPLAY: xvfb.display, HOME: profile, XDG_DATA_HOME: profile, XDG_CACHE_HOME: profile, XDG_CONFIG_HOME: profile },
      });
      const c = child(mb);
      let out = "";
      let seen = () => {};
      const matched = new Promise<void>((r) => (seen = r));
      const take = (d: Buffer) => {
        out += d.toString();
        if (until?.test(out) === true) seen();
      };
      // The messages come on stderr (unbuffered), with GTK's chatter; read both.
      mb.stdout?.on("data", take);
      mb.stderr?.on("data", take);
      try {
        await Promise.race([sleep(settleMs), matched]);
      } finally {
        await c.stop();
        rmSync(profile, { recursive: true, force: true });
      }
      return out.split("\n").filter((l) => /\bCONSOLE (?:\w+ )?(?:ERROR|WARN)/.test(l));
    },
    name: "webkit",
    version,
    watchesFromStart: false,
    watchCoverage:
      "from a script the test runs after the load event (no console or network events in classic WebDriver): console.error/warn calls, uncaught errors and the page's fetch/XHR failures and statuses ≥ 400; not the engine's own messages or requests. The page's first run: console calls and uncaught errors only, from a standalone MiniBrowser (consoleAtLoad)",
    async open(url, opts = {}) {
      const handle = await onWindow(current, async () => {
        await driver.switchTo().newWindow("tab");
        current = await driver.getWindowHandle();
        await driver.get(url);
        // driver.get returns after the load event: the earliest a script can run.
        if (opts.watch === true) await driver.executeScript(WATCHER);
        return current;
      });
      // A pending evaluation would block the queue: start each in the page,
      // keep its outcome there, and poll for it.
      const p: EnginePage = {
        async evaluate(fn, arg) {
          const id = ++evalSeq;
          await onWindow(handle, () =>
            driver.executeScript(
              `const [id, arg] = arguments; const box = (window.weirEvals ??= {}); box[id] = { done: false };
               Promise.resolve().then(() => (${fn.toString()})(arg)).then(
                 (v) => { box[id] = { done: true, ok: true, v: v === undefined ? null : v }; },
                 (e) => { box[id] = { done: true, ok: false, e: String(e && e.stack || e) }; });`,
              id,
              arg === undefined ? null : arg,
            ),
          );
          for (let wait = 5; ; wait = Math.min(wait * 2, 50)) {
            const r = (await onWindow(handle, () =>
              driver.executeScript(`const b = window.weirEvals[arguments[0]]; if (b.done) delete window.weirEvals[arguments[0]]; return b;`, id),
            )) as { done: boolean; ok?: boolean; v?: unknown; e?: string };
            if (r.done) {
              if (r.ok !== true) throw new Error(`in the page: ${r.e ?? "?"}`);
              return r.v as never;
            }
            await sleep(wait);
          }
        },
        waitFor: (fn, arg, timeoutMs = 15_000) => pollUntil(p, fn, arg, timeoutMs),
        errors: () => readErrors(p),
        log:
          opts.watch === true
            ? () => p.evaluate(() => (window as { weirPageLog?: PageLog }).weirPageLog ?? { complaints: ["the page lost its watcher (navigated?)"], failed: [], errorStatus: [] }, undefined)
            : notWatched,
        close: () =>
          onWindow(handle, async () => {
            await driver.close();
            await driver.switchTo().window(home);
            current = home;
          }),
      };
      return p;
    },
    async close() {
      await driver.quit().catch(() => {});
      await stopAll();
    },
  };
}

const LAUNCH: Record<EngineName, (o: LaunchOptions) => Promise<Engine>> = {
  chromium: launchChromium,
  firefox: launchFirefox,
  webkit: launchWebKit,
};
