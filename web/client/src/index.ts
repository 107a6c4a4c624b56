export { createFetchTransport, supportsRequestStreams, type FetchTransportOptions } from "./fetch.js";
export { createXhrTransport, type XhrTransportOptions } from "./xhr.js";
export type { Format, HeartbeatOptions, TransportOptions } from "./core.js";
export {
  createWebTransportTransport,
  supportsWebTransport,
  type CertificateHash,
  type SessionCloseInfo,
  type WebTransportTransport,
  type WebTransportTransportOptions,
} from "./webtransport.js";
export { createAutoTransport, type AutoTransport, type AutoTransportOptions, type TransportChoice } from "./auto.js";
export { codeFromStreamError, decodeHeaderBlock, encodeHeaderBlock, StreamErrorCode } from "./wt-protocol.js";
