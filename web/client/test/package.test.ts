// @weir/client as a user installs it: `npm pack` the package, install the
// tarball into a throwaway project outside the workspace together with
// @connectrpc/connect and @bufbuild/protobuf from the registry (the versions
// this workspace pins), then
//   - type-check a TypeScript consumer against the package's .d.ts,
//   - run a plain Node ESM script (no TypeScript tooling) that calls `weir demo`,
//   - bundle a page with esbuild and call `weir demo` from headless Chromium.
// Nothing in the throwaway project can resolve into this workspace, so a
// package that only works here (sources, a missing file, wrong `exports`)
// fails. The generated TestService code is this workspace's (web/interop),
// turned into plain JS.
//
// Needs the npm registry. If `npm install` fails the suite skips, or fails
// under WEIR_REQUIRE=1.

import assert from "node:assert/strict";
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test, type TestContext } from "node:test";
import { build, transform } from "esbuild";
import type { Browser } from "playwright-core";
import { truthy } from "../../interop/src/harness/paths.js";
import { CLIENT_DIR, clientTargets, html, launch, serveFiles, type ServerUnderTest, type StaticServer } from "./harness.js";

const WORKSPACE = resolve(CLIENT_DIR, "..");
const REPO = resolve(WORKSPACE, "..");
const CONSUMER = resolve(CLIENT_DIR, "test/package-consumer");
const GEN = resolve(WORKSPACE, "interop/src/gen/grpc/testing");
const manifest = JSON.parse(readFileSync(resolve(CLIENT_DIR, "package.json"), "utf8")) as {
  name: string;
  version: string;
  exports: { ".": { types: string; import: string } };
  devDependencies: Record<string, string>;
};
const weir = clientTargets().find((t) => t.isWeir);

// What the calls ask for; the server's answers are measured against it.
const PLAN = { unary: 1234, stream: [3, 1, 4, 1, 5, 9], upload: [100, 200, 300] };

/** The environment for npm and node in the throwaway project: none of the
 * settings an enclosing `npm test --workspaces` exports (workspace, prefix,
 * lifecycle), and no loader hooks. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !/^npm_config_(cache|registry|userconfig)$/i.test(k)) continue;
    if (k === "NODE_OPTIONS" || k === "INIT_CWD") continue;
    env[k] = v;
  }
  return env;
}

function run(command: string, args: string[], cwd: string, timeout = 180_000): SpawnSyncReturns<string> {
  return spawnSync(command, args, { cwd, env: cleanEnv(), encoding: "utf8", timeout });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.error !== undefined) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what} exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface Packed {
  filename: string;
  files: { path: string }[];
}

describe("@weir/client installed from its npm pack tarball", { skip: weir === undefined ? "weir target not selected" : weir.skip }, () => {
  let dir = "";
  let app = "";
  let packed: Packed | undefined;
  /** Why the registry install failed, when it did. */
  let notInstalled: string | undefined;
  let sut: ServerUnderTest | undefined;
  let pages: StaticServer | undefined;
  let browser: Browser | undefined;
  let bundleInputs: string[] = [];
  const t0 = Date.now();

  before(async () => {
    assert.ok(weir);
    if (weir.unavailable !== undefined) assert.fail(weir.unavailable);
    dir = mkdtempSync(join(tmpdir(), "weir-client-package-"));
    assert.ok(relative(REPO, dir).startsWith(".."), `the throwaway project must be outside the repository: ${dir}`);

    // `npm pack` builds first (the prepack script).
    const out = ok(run("npm", ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], CLIENT_DIR), "npm pack");
    packed = (JSON.parse(out.slice(out.indexOf("["))) as Packed[])[0];
    assert.ok(packed, `npm pack printed no package:\n${out}`);

    app = join(dir, "app");
    mkdirSync(join(app, "gen"), { recursive: true });
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "weir-client-consumer", private: true, type: "module" }, null, 2));
    for (const f of readdirSync(CONSUMER)) writeFileSync(join(app, f), readFileSync(join(CONSUMER, f)));
    // protoc-gen-es's TypeScript output, types stripped: what `target=js` would give.
    for (const f of readdirSync(GEN).filter((n) => n.endsWith("_pb.ts"))) {
      const js = await transform(readFileSync(join(GEN, f), "utf8"), { loader: "ts", format: "esm", target: "es2022" });
      writeFileSync(join(app, "gen", f.replace(/\.ts$/, ".js")), js.code);
    }

    const deps = ["@connectrpc/connect", "@bufbuild/protobuf"].map((d) => `${d}@${manifest.devDependencies[d]}`);
    const install = run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", join(dir, packed.filename), ...deps], app);
    if (install.error !== undefined || install.status !== 0) {
      notInstalled =
        `npm install of ${deps.join(", ")} from the registry (and the tarball) failed in ${app}: ` +
        `${install.error?.message ?? `exit ${install.status}`}\n${install.stderr}`;
      return;
    }

    // The page: bundled from the installed packages, served from an origin of its own.
    const bundled = await build({
      entryPoints: [join(app, "page.mjs")],
      absWorkingDir: app,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    bundleInputs = Object.keys(bundled.metafile.inputs);
    pages = await serveFiles({
      "/": ["text/html; charset=utf-8", html("/page.js")],
      "/page.js": ["text/javascript", bundled.outputFiles[0]?.text ?? ""],
    });
    sut = await weir.start([pages.origin]);
  });

  after(async () => {
    await browser?.close();
    await pages?.close();
    await sut?.server.stop();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
    console.log(`# package test: ${((Date.now() - t0) / 1000).toFixed(1)} s (npm pack, npm install from the registry, Node, esbuild, Chromium)`);
  });

  /** Skips, or fails under WEIR_REQUIRE, when the registry install failed. */
  const installed = (t: TestContext): boolean => {
    if (notInstalled === undefined) return true;
    if (truthy(process.env.WEIR_REQUIRE)) assert.fail(`WEIR_REQUIRE is set and ${notInstalled}`);
    t.skip(`${notInstalled}\nSet WEIR_REQUIRE=1 to make this a failure.`);
    return false;
  };

  test("the tarball holds the build, README, LICENSE and package.json, and nothing else", () => {
    assert.ok(packed);
    const files = packed.files.map((f) => f.path).sort();
    const stray = files.filter((f) => !/^(package\.json|README\.md|LICENSE|dist\/[\w-]+\.(js|js\.map|d\.ts))$/.test(f));
    assert.deepEqual(stray, [], "files that do not belong in the package");
    // Every module of the sources, built: JavaScript, its source map, its declarations.
    const modules = readdirSync(resolve(CLIENT_DIR, "src")).filter((f) => f.endsWith(".ts")).map((f) => f.replace(/\.ts$/, ""));
    assert.ok(modules.includes("index"));
    const expected = ["LICENSE", "README.md", "package.json", ...modules.flatMap((m) => [`dist/${m}.d.ts`, `dist/${m}.js`, `dist/${m}.js.map`])].sort();
    assert.deepEqual(files, expected);
    for (const target of Object.values(manifest.exports["."])) assert.ok(files.includes(target.replace(/^\.\//, "")), `exports names ${target}, which is not in the tarball`);
  });

  test("a TypeScript project type-checks against the package's declarations", (t) => {
    if (!installed(t)) return;
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "es2022", module: "nodenext", moduleResolution: "nodenext", lib: ["es2023", "dom"], types: [], strict: true, noEmit: true },
        files: ["check.ts"],
      }),
    );
    // This workspace's compiler, run in the throwaway project: it resolves @weir/client there.
    const tsc = resolve(WORKSPACE, "node_modules/typescript/bin/tsc");
    const r = run(process.execPath, [tsc, "-p", join(app, "tsconfig.json")], app);
    assert.equal(r.status, 0, `tsc in the throwaway project:\n${r.stdout}${r.stderr}`);
  });

  test("plain Node ESM imports it and calls weir demo over Node's fetch", { timeout: 60_000 }, (t) => {
    if (!installed(t)) return;
    assert.ok(sut);
    const out = ok(run(process.execPath, [join(app, "node.mjs"), sut.server.url, JSON.stringify(PLAN)], app, 30_000), "node node.mjs");
    const got = JSON.parse(out) as { resolved: string; unary: number; stream: number[]; upload: number };
    assert.equal(got.resolved, pathToFileURL(join(app, "node_modules", manifest.name, manifest.exports["."].import)).href);
    assert.deepEqual(
      { unary: got.unary, stream: got.stream, upload: got.upload },
      { unary: PLAN.unary, stream: PLAN.stream, upload: PLAN.upload.reduce((a, b) => a + b, 0) },
    );
  });

  test("bundled with esbuild, a page calls weir demo from Chromium (fetch and XHR)", { timeout: 60_000 }, async (t) => {
    if (!installed(t)) return;
    assert.ok(sut && pages);
    // The bundle took @weir/client from the installed tarball's build.
    const own = bundleInputs.filter((p) => p.includes(`node_modules/${manifest.name}/`));
    assert.ok(own.length > 0 && own.every((p) => p.includes(`node_modules/${manifest.name}/dist/`)), `bundle inputs: ${bundleInputs.join(", ")}`);
    browser = await launch();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${pages.origin}/`);
    await page.waitForFunction(() => "run" in window, undefined, { timeout: 10_000 });
    const got = await page.evaluate(
      ([url, plan]) => (window as unknown as { run(u: string, p: unknown): Promise<unknown> }).run(url, plan),
      [sut.server.url, PLAN] as const,
    );
    const expected = { unary: PLAN.unary, stream: PLAN.stream };
    assert.deepEqual(got, { fetch: expected, xhr: expected });
    assert.deepEqual(errors, []);
  });
});
