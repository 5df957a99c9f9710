import type { Signal, SignalDirection } from '../domain/index.js';

/** Which signals to read: every filter optional, always newest first, paged by keyset. */
export interface SignalQuery {
  /** signals that name this exchange (signals without one do not match) */
  readonly exchange?: string;
  readonly symbol?: string;
  /** the token identity that published them */
  readonly publisher?: string;
  readonly direction?: SignalDirection;
  /** inclusive, ms epoch */
  readonly since?: number;
  /** exclusive, ms epoch */
  readonly until?: number;
  /** keyset cursor: signals strictly older than (ts, id) in (ts DESC, id DESC) order */
  readonly after?: { readonly ts: number; readonly id: string };
  readonly limit: number;
}

/** Read side of the signals the stores keep; a signal delivered twice is read once. */
export interface SignalReader {
  /** Signals matching `query`, newest first (ts, then id, descending). */
  readSignals(query: SignalQuery): Promise<readonly Signal[]>;
}
