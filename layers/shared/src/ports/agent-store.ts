/**
 * What the agent toolset of the MCP server keeps: the kill switch, the audit log of agents'
 * decisions, and paper accounts with their fills. Agents never reach it directly: only the
 * server's tools (and the operator's CLI) do.
 */

/** The kill switch: while engaged, no agent acts (runs stop, paper orders are refused). */
export interface KillSwitchState {
  readonly engaged: boolean;
  /** why it was last engaged or released; null when it never changed */
  readonly reason: string | null;
  /** when it last changed, ms epoch */
  readonly since: number | null;
  /** principal that last changed it */
  readonly by: string | null;
}

export interface KillSwitchChange {
  readonly engaged: boolean;
  readonly reason: string;
  readonly by: string;
  /** ms epoch */
  readonly ts: number;
}

/** One audit entry to append; `inputs` and `output` are bounded by the store (see AUDIT_JSON_MAX_BYTES). */
export interface NewAuditEntry {
  /** ms epoch, server time */
  readonly ts: number;
  /** caller's principal, set by the server */
  readonly principal: string;
  readonly runId: string;
  readonly agent: string;
  readonly kind: string;
  readonly market: { readonly exchange: string; readonly symbol: string } | null;
  readonly summary: string;
  readonly inputs: unknown;
  readonly output: unknown;
}

export interface AuditEntry extends NewAuditEntry {
  readonly id: string;
}

export interface AuditQuery {
  readonly runId?: string | undefined;
  readonly agent?: string | undefined;
  readonly kind?: string | undefined;
  readonly exchange?: string | undefined;
  readonly symbol?: string | undefined;
  /** inclusive, ms epoch */
  readonly since?: number | undefined;
  /** exclusive, ms epoch */
  readonly until?: number | undefined;
  /** entries strictly older than this one (keyset page) */
  readonly before?: { readonly ts: number; readonly id: string } | undefined;
  readonly limit: number;
}

export interface PaperAccount {
  readonly account: string;
  readonly initialCash: number;
  /** ms epoch */
  readonly createdTs: number;
}

/** A booked paper fill. */
export interface PaperFillRecord {
  readonly account: string;
  readonly clientOrderId: string;
  /** booking time, ms epoch */
  readonly ts: number;
  readonly exchange: string;
  readonly symbol: string;
  readonly side: 'buy' | 'sell';
  readonly quantity: number;
  readonly vwap: number;
  readonly notional: number;
  readonly fee: number;
  readonly slippageBps: number;
  readonly levels: number;
  readonly partial: boolean;
  /** exchange time of the book filled against, and its age when filled */
  readonly bookTs: number;
  readonly bookAgeMs: number;
  readonly signalId: string | null;
  readonly principal: string;
}

/** What `bookFill` needs to open the account on first use and find a duplicate. */
export interface FillBooking {
  readonly account: string;
  /** cash of the account when this call opens it */
  readonly initialCash: number;
  readonly clientOrderId: string;
  /** ms epoch: the account's creation time when opened now */
  readonly ts: number;
}

export interface AgentStore {
  killSwitch(): Promise<KillSwitchState>;
  setKillSwitch(change: KillSwitchChange): Promise<KillSwitchState>;

  /** Appends one entry; returns its id. */
  appendAudit(entry: NewAuditEntry): Promise<{ id: string; ts: number }>;
  /** Entries matching `q`, newest first (ts, then id). */
  queryAudit(q: AuditQuery): Promise<readonly AuditEntry[]>;

  account(account: string): Promise<PaperAccount | null>;
  /** Fills of an account in booking order (oldest first). */
  fills(account: string): Promise<readonly PaperFillRecord[]>;
  /** The fill booked under a client order id, if any. */
  fill(account: string, clientOrderId: string): Promise<PaperFillRecord | null>;
  /**
   * Books one fill atomically per account: opens the account (with `initialCash`) when new, and
   * unless `clientOrderId` is booked already (then that fill comes back, `duplicate`), asks
   * `decide` for the fill given the account and its fills so far, and stores it. `decide` throws to
   * refuse (nothing is booked); no other order of the account is booked in between.
   */
  bookFill(
    booking: FillBooking,
    decide: (account: PaperAccount, fills: readonly PaperFillRecord[]) => Omit<PaperFillRecord, 'account' | 'clientOrderId'>,
  ): Promise<{ fill: PaperFillRecord; account: PaperAccount; duplicate: boolean }>;
}
