export { createFetchTransport, supportsRequestStreams, type FetchTransportOptions } from "./fetch.js";
export { createXhrTransport, type XhrTransportOptions } from "./xhr.js";
export type { Format, HeartbeatOptions, TransportOptions } from "./core.js";
