import type { FeedChannel, FundingEvent, GapReason, GapStatus, LedgerEvent } from '../domain/index.js';

/** Funding/open-interest snapshot as a store keeps it: a funding event without its `type`. */
export type FundingRecord = Omit<FundingEvent, 'type'>;

/** A store that keeps funding rates and open interest (the operational store does; ClickHouse does not). */
export interface FundingWriter {
  writeFunding(snapshots: readonly FundingRecord[]): Promise<number>;
}

export interface LedgerWriteSummary {
  readonly statuses: number;
  readonly gaps: number;
}

/** Write side of the completeness ledger; idempotent, so replays and reordering change nothing. */
export interface LedgerWriter {
  writeLedger(events: readonly LedgerEvent[]): Promise<LedgerWriteSummary>;
}

/** Completeness of one exchange/symbol/channel, summed over every collector run that reported it. */
export interface FeedHealth {
  readonly exchange: string;
  /** `*` for exchange-wide counts (frames that named no market) */
  readonly symbol: string;
  readonly channel: FeedChannel;
  readonly messages: number;
  readonly events: number;
  readonly rejected: number;
  readonly malformed: number;
  readonly duplicates: number;
  readonly reordered: number;
  readonly gapsDetected: number;
  readonly gapsFilled: number;
  readonly gapsUnfilled: number;
  /** gaps recorded open and not (yet) resolved */
  readonly gapsOpen: number;
  readonly tradesRecovered: number;
  readonly reconnects: number;
  readonly resubscribes: number;
  readonly watchErrors: number;
  /** exchange time of the newest event, receipt time of the newest message */
  readonly lastMessageTs: number | null;
  readonly lastMessageLocalTs: number | null;
  /** asOf - lastMessageLocalTs */
  readonly lastMessageAgeMs: number | null;
  readonly lastError: string | null;
  readonly malformedSample: string | null;
  /** collector runs that reported this feed, and when the newest report was taken */
  readonly runs: number;
  readonly reportedAt: number;
}

export interface FeedHealthQuery {
  readonly exchange?: string;
  readonly symbol?: string;
  readonly channel?: FeedChannel;
  /** the time ages are measured from (default: now) */
  readonly asOf?: number;
}

/** One gap as stored: its latest state. */
export interface GapRecord {
  readonly gapId: string;
  readonly runId: string;
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: 'trades';
  readonly kind: 'id' | 'time';
  readonly reason: GapReason;
  readonly status: GapStatus;
  readonly fromId: string | null;
  readonly toId: string | null;
  readonly fromTs: number | null;
  readonly toTs: number | null;
  readonly missing: number | null;
  readonly recovered: number;
  readonly detectedAt: number;
  readonly resolvedAt: number | null;
  readonly detail: string | null;
}

export interface GapQuery {
  readonly exchange?: string;
  readonly symbol?: string;
  readonly status?: GapStatus;
  /** detected at or after (ms epoch) */
  readonly since?: number;
  /** detected before (ms epoch) */
  readonly until?: number;
  /** newest first; default 100 */
  readonly limit?: number;
}

/** Read side of the completeness ledger (the data-health tool's source). */
export interface LedgerReader {
  feedHealth(query?: FeedHealthQuery): Promise<readonly FeedHealth[]>;
  gaps(query?: GapQuery): Promise<readonly GapRecord[]>;
}
