// Reports the size of the client as a browser bundle, built from the package
// as published (what package.json's `exports` point at, in dist/; `npm run
// size` builds it first): minified, and minified+gzip. Two figures:
// everything a page ships for @weir/client (with the parts of
// @connectrpc/connect and @bufbuild/protobuf it pulls in), and weir's own code
// alone (those two as externals).

import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { CLIENT_DIR } from "../test/harness.js";

const manifest = JSON.parse(readFileSync(resolve(CLIENT_DIR, "package.json"), "utf8")) as { exports: { ".": { import: string } } };
const entry = manifest.exports["."].import;
if (!existsSync(resolve(CLIENT_DIR, entry))) {
  console.error(`${entry} is missing: run \`npm run build\` in web/client first`);
  process.exit(1);
}

async function size(external: string[], names = "createFetchTransport, createXhrTransport") {
  const r = await build({
    stdin: {
      contents: `export { ${names} } from ${JSON.stringify(entry)};`,
      resolveDir: CLIENT_DIR,
      loader: "js",
    },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    write: false,
    external,
    logLevel: "silent",
  });
  const bytes = r.outputFiles[0]?.contents ?? new Uint8Array();
  return { min: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
}

const all = await size([]);
const own = await size(["@connectrpc/connect", "@connectrpc/connect/*", "@bufbuild/protobuf", "@bufbuild/protobuf/*"]);
const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`# bundle size, @weir/client with the Connect/protobuf runtime it uses: ${kb(all.min)} minified, ${kb(all.gz)} min+gzip`);
console.log(`# bundle size, @weir/client's own code: ${kb(own.min)} minified, ${kb(own.gz)} min+gzip`);
const EXTERNAL = ["@connectrpc/connect", "@connectrpc/connect/*", "@bufbuild/protobuf", "@bufbuild/protobuf/*"];
for (const names of ["createWebTransportTransport", "createAutoTransport"]) {
  const a = await size([], names);
  const o = await size(EXTERNAL, names);
  console.log(`# bundle size, ${names} alone: ${kb(a.min)} minified, ${kb(a.gz)} min+gzip with the runtime; own code ${kb(o.min)} minified, ${kb(o.gz)} min+gzip`);
}
