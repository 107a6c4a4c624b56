// A consumer of @weir/client as installed from its tarball: plain Node ESM, no
// TypeScript tooling. Copied into a throwaway project by package.test.ts and
// run as `node node.mjs BASE_URL PLAN`; prints what the calls returned as JSON.

import { createClient } from "@connectrpc/connect";
import { createFetchTransport } from "@weir/client";
import { TestService } from "./gen/test_pb.js";

const [baseUrl, planJson] = process.argv.slice(2);
const plan = JSON.parse(planJson);
const client = createClient(TestService, createFetchTransport({ baseUrl }));

const unary = await client.unaryCall({ responseSize: plan.unary });
const stream = [];
for await (const m of client.streamingOutputCall({ responseParameters: plan.stream.map((size) => ({ size })) })) {
  stream.push(m.payload?.body.length ?? 0);
}
const upload = await client.streamingInputCall(
  (async function* () {
    for (const size of plan.upload) yield { payload: { body: new Uint8Array(size) } };
  })(),
);

console.log(
  JSON.stringify({
    resolved: import.meta.resolve("@weir/client"),
    unary: unary.payload?.body.length ?? 0,
    stream,
    upload: upload.aggregatedPayloadSize,
  }),
);
