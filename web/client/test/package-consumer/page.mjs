// A page's entry point using @weir/client as installed from its tarball,
// bundled by package.test.ts with esbuild for the browser. The test calls
// `window.run(BASE_URL, PLAN)`, which resolves to what the calls returned,
// per transport.

import { createClient } from "@connectrpc/connect";
import { createFetchTransport, createXhrTransport } from "@weir/client";
import { TestService } from "./gen/test_pb.js";

async function calls(transport, plan) {
  const client = createClient(TestService, transport);
  const unary = await client.unaryCall({ responseSize: plan.unary });
  const stream = [];
  for await (const m of client.streamingOutputCall({ responseParameters: plan.stream.map((size) => ({ size })) })) {
    stream.push(m.payload?.body.length ?? 0);
  }
  return { unary: unary.payload?.body.length ?? 0, stream };
}

window.run = async (baseUrl, plan) => ({
  fetch: await calls(createFetchTransport({ baseUrl, format: "binary" }), plan),
  xhr: await calls(createXhrTransport({ baseUrl, format: "text" }), plan),
});
