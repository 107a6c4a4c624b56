// Checks that the committed src/gen matches what `npm run generate` would
// produce from ../../proto. Regenerates into a temporary directory with the
// buf compiler and protoc-gen-es from node_modules, then compares.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(fileURLToPath(import.meta.url), "../..");
const committed = join(pkg, "src/gen");
const out = mkdtempSync(join(tmpdir(), "weir-gen-"));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

try {
  const bin = join(pkg, "node_modules/.bin");
  const rootBin = resolve(pkg, "../node_modules/.bin");
  execFileSync("buf", ["generate", "--output", out], {
    cwd: pkg,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, PATH: [bin, rootBin, process.env.PATH].join(":") },
    timeout: 120_000,
  });
  const fresh = join(out, "src/gen");
  const a = files(committed).map((f) => relative(committed, f)).sort();
  const b = files(fresh).map((f) => relative(fresh, f)).sort();
  const problems: string[] = [];
  for (const f of new Set([...a, ...b])) {
    if (!a.includes(f)) problems.push(`missing from src/gen: ${f}`);
    else if (!b.includes(f)) problems.push(`stale file in src/gen: ${f}`);
    else if (!readFileSync(join(committed, f)).equals(readFileSync(join(fresh, f)))) problems.push(`out of date: src/gen/${f}`);
  }
  if (problems.length > 0) {
    console.error(`generated code is not up to date with proto/ (run \`npm run generate\` in web/interop):\n  ${problems.join("\n  ")}`);
    process.exitCode = 1;
  } else {
    console.log(`src/gen is up to date (${a.length} files)`);
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
