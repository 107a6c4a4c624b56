// The reference server's grpc-web-text encoding (connect-node speaks binary
// gRPC-Web only; src/grpc-web-text.ts translates). A text stream must carry
// each message as soon as it is written, like weir's: a client cannot decode
// a message before all of its base64 groups have arrived.

import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeBase64Stream, encodeBase64Stream } from "../src/grpc-web-text.js";

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

const bytes = (n: number, from = 0) => Uint8Array.from({ length: n }, (_, i) => (from + i * 37) & 0xff);

test("every chunk is sent whole as it arrives, not held back until the next one", async () => {
  // Lengths 19 and 20 leave 1 and 2 bytes over a multiple of 3.
  for (const n of [19, 20, 21]) {
    let release = () => {};
    const later = new Promise<void>((r) => (release = r));
    const first = bytes(n);
    const second = bytes(7, 100);
    const encoded = encodeBase64Stream(
      (async function* () {
        yield first;
        await later; // the server's next message, 20 s later in the idle-stream case
        yield second;
      })(),
    )[Symbol.asyncIterator]();
    const head = await encoded.next();
    assert.equal(head.done, false);
    assert.deepEqual(await collect(decodeBase64Stream(once(head.value as Uint8Array))), Buffer.from(first), `${n} bytes: all of the first chunk, before the second exists`);
    release();
    const rest: Uint8Array[] = [];
    for (let r = await encoded.next(); r.done !== true; r = await encoded.next()) rest.push(r.value);
    // The whole text (padding inside it) decodes to both chunks.
    const text = Buffer.concat([head.value as Uint8Array, ...rest]);
    assert.deepEqual(await collect(decodeBase64Stream(once(text))), Buffer.concat([first, second]));
  }
});
