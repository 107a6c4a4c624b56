// Builds the demo page served by `weir demo` at `/`: browser/demo.html with
// the bundled, minified browser/demo.ts inlined, written to
// crates/gateway/src/assets/index.html. With --check, builds into a temp dir
// and fails if the committed file differs.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { CLIENT_DIR } from "../test/harness.js";

const TARGET = resolve(CLIENT_DIR, "../../crates/gateway/src/assets/index.html");

async function page(): Promise<string> {
  const result = await build({
    entryPoints: [resolve(CLIENT_DIR, "browser/demo.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    logLevel: "silent",
  });
  const js = (result.outputFiles[0]?.text ?? "").trim().replace(/<\/script/gi, "<\\/script");
  const template = readFileSync(resolve(CLIENT_DIR, "browser/demo.html"), "utf8");
  return template.replace("/*BUNDLE*/", () => js);
}

const html = await page();
if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "weir-demo-"));
  try {
    const fresh = join(dir, "index.html");
    writeFileSync(fresh, html);
    if (readFileSync(fresh, "utf8") !== readFileSync(TARGET, "utf8")) {
      console.error(`${TARGET} is stale: run \`npm run build:demo\` in web/client and commit the result`);
      process.exit(1);
    }
    console.log(`demo page up to date (${html.length} bytes)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
} else {
  writeFileSync(TARGET, html);
  console.log(`wrote ${TARGET} (${html.length} bytes)`);
}
