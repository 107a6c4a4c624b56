// Reports the size of the client as a browser bundle: minified, and
// minified+gzip. Two figures: everything a page ships for @weir/client
// (with the parts of @connectrpc/connect and @bufbuild/protobuf it pulls
// in), and weir's own code alone (those two as externals).

import { resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { CLIENT_DIR } from "../test/harness.js";

async function size(external: string[]) {
  const r = await build({
    stdin: {
      contents: `export { createFetchTransport, createXhrTransport } from "./src/index.js";`,
      resolveDir: CLIENT_DIR,
      loader: "ts",
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
void resolve;
