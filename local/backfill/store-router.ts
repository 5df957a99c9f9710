/**
 * Where backfilled rows go: the store that holds their range. PostgreSQL/TimescaleDB (or PGlite)
 * keeps the recent window (RETENTION_TICKS_DAYS for trades, RETENTION_CANDLES_DAYS for candles),
 * ClickHouse keeps history; RoutedMarketReader reads a range older than that handover from
 * ClickHouse. So a row older than the handover goes to ClickHouse when one is configured. A row
 * inside the window goes to PostgreSQL, and to ClickHouse too: in service mode both writers get
 * every event, ClickHouse being the store that still has it once PostgreSQL's retention drops it.
 * Without ClickHouse (embedded mode) everything goes to the one store.
 */
import type { MarketEvent } from '../../layers/shared/src/domain/index.js';
import type { Clock, MarketWriter } from '../../layers/shared/src/ports/index.js';

const DAY_MS = 86_400_000;

/** How many days the recent store keeps (the handover to ClickHouse). */
export interface RetentionDays {
  readonly ticksDays: number;
  readonly candlesDays: number;
}

export const DEFAULT_RETENTION_DAYS: RetentionDays = { ticksDays: 7, candlesDays: 30 };

/** Rows of one page written to each store. */
export interface RoutedWrite {
  readonly recent: number;
  readonly history: number;
}

/** A page's destination: the recent store, and ClickHouse when configured. */
export class BackfillStoreRouter {
  constructor(
    private readonly recent: MarketWriter,
    private readonly history: MarketWriter | null,
    private readonly retention: RetentionDays,
    private readonly clock: Clock,
  ) {}

  /** First instant the recent store keeps, for trades or candles (ms epoch). */
  handover(kind: 'trades' | 'candles'): number {
    return this.clock.now() - (kind === 'trades' ? this.retention.ticksDays : this.retention.candlesDays) * DAY_MS;
  }

  /** Writes one page, each row to the store(s) that hold its range; idempotent like the stores. */
  async write(events: readonly MarketEvent[]): Promise<RoutedWrite> {
    if (events.length === 0) return { recent: 0, history: 0 };
    const history = this.history;
    if (!history) {
      await this.recent.writeEvents(events);
      return { recent: events.length, history: 0 };
    }
    const handover = { trades: this.handover('trades'), candles: this.handover('candles') };
    const recent = events.filter((e) => e.ts >= (e.type === 'candle' ? handover.candles : handover.trades));
    await Promise.all([recent.length > 0 ? this.recent.writeEvents(recent) : undefined, history.writeEvents(events)]);
    return { recent: recent.length, history: events.length };
  }

  /** One line for people: where rows go. */
  describe(names: { readonly recent: string; readonly history?: string }): string {
    return describeRouting(this.retention, this.history !== null, names);
  }
}

/** One line for people: where rows go, with or without ClickHouse. */
export function describeRouting(retention: RetentionDays, withHistory: boolean, names: { readonly recent: string; readonly history?: string }): string {
  if (!withHistory) return `every row to ${names.recent}`;
  const history = names.history ?? 'ClickHouse';
  return (
    `rows older than the recent store's retention (trades ${retention.ticksDays} d, candles ${retention.candlesDays} d) ` +
    `to ${history} only; newer rows to ${names.recent} and ${history}`
  );
}
