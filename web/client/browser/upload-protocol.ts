// What the upload page (upload-page.ts) exposes to the browser-upload suite:
// client-streaming and half-duplex calls whose request stream the test drives
// message by message. Only JSON-friendly values cross the boundary.

import type { RequestSpec, WireFormat } from "./protocol.js";

export interface UploadSpec {
  baseUrl: string;
  format?: WireFormat;
  method: "StreamingInputCall" | "HalfDuplexCall";
  /** Sent as x-weir-test-id, so the upstream's message events name this call. */
  id: string;
  requests: RequestSpec[];
  /** Hand message i (i ≥ 1) to the transport only after release() was called i times. */
  gated: boolean;
}

/** One fetch the transport made, as seen by a spy wrapped around fetch. */
export interface FetchRecord {
  body: "stream" | "buffered";
  /** `response` (fetch resolved), or the rejection. */
  outcome: "response" | "rejected";
  error?: string;
}

export interface UploadEvent {
  /** `yield i`: message i handed to the transport; `requestEnd`: the request stream ended; `answer i`; `end`. */
  what: string;
  /** ms since the call started. */
  at: number;
}

export interface UploadState {
  /** Messages handed to the transport so far. */
  sent: number;
  /** Whether the request stream has ended. */
  requestEnded: boolean;
  /** Whether the call has finished. */
  finished: boolean;
  events: UploadEvent[];
}

export interface UploadOutcome extends UploadState {
  /** 0 for OK, else the ConnectError code. */
  code: number;
  message: string;
  /** StreamingInputCall: [aggregated size]; HalfDuplexCall: each answer's size. */
  sizes: number[];
  fetches: FetchRecord[];
}

export interface UploadPage {
  supportsRequestStreams(): boolean;
  /** Starts a call; returns its handle. */
  start(spec: UploadSpec): number;
  /** Lets the gated request stream hand over its next message. */
  release(handle: number): void;
  abort(handle: number): void;
  state(handle: number): UploadState;
  result(handle: number): Promise<UploadOutcome>;
}

declare global {
  interface Window {
    weirUpload: UploadPage;
  }
}
