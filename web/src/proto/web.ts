/**
 * The WebSocket binding (SPEC.md section 12), as baatkaro-proto's `web` module:
 * the subprotocol a page asks for, and the largest message either side may send.
 */

/** The subprotocol of version 1, asked for in `Sec-WebSocket-Protocol`. */
export const SUBPROTOCOL = "baatkaro.v1";

/** Octets of coalesced frames the server puts in one message, at most (its PIECE). */
export const PIECE = 64 * 1024;

/** The largest message either side may send: a piece plus the largest frame. */
export function messageMax(limits: { readonly line: number; readonly payload: number }): number {
  return PIECE + limits.line + limits.payload;
}
