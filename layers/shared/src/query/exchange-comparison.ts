import type { MarketSnapshotAnswer, SnapshotFigure } from './market-query.js';

/**
 * Cross-exchange comparison of one or more symbols from a market snapshot: each exchange's last
 * price against the median, and the best spread from buying at one exchange's ask and selling at
 * another's bid. Stale figures are flagged and kept out of the median and the best spread.
 */

export interface ComparedFigure extends SnapshotFigure {
  /** older than the caller's threshold */
  readonly stale: boolean;
}

export interface ExchangeQuote {
  readonly exchange: string;
  readonly last: ComparedFigure | null;
  readonly bid: ComparedFigure | null;
  readonly ask: ComparedFigure | null;
  /** (last - median) / median in bps; null without a last price or a median */
  readonly divergenceBps: number | null;
  /** which figures are stale */
  readonly staleSides: readonly ('last' | 'bid' | 'ask')[];
}

export interface CrossSpread {
  readonly buyExchange: string;
  readonly ask: number;
  readonly sellExchange: string;
  readonly bid: number;
  /** (bid - ask) / ask in bps: positive means the bid on one exchange is above the ask on another (before fees) */
  readonly bps: number;
}

export interface SymbolComparison {
  readonly symbol: string;
  readonly exchanges: readonly ExchangeQuote[];
  /** median of the fresh last prices; null when none is fresh */
  readonly medianPrice: number | null;
  /** how many fresh last prices the median is of */
  readonly medianOf: number;
  /** best of buying at one exchange's fresh ask and selling at another's fresh bid; null with fewer than two exchanges quoting */
  readonly bestSpread: CrossSpread | null;
}

/** Compares the exchanges of each symbol of `snapshot`; figures older than `staleAfterMs` are stale. */
export function compareExchanges(snapshot: MarketSnapshotAnswer, staleAfterMs: number): SymbolComparison[] {
  const bySymbol = new Map<string, MarketSnapshotAnswer['snapshots'][number][]>();
  for (const s of snapshot.snapshots) bySymbol.set(s.symbol, [...(bySymbol.get(s.symbol) ?? []), s]);
  const flag = (f: SnapshotFigure | null): ComparedFigure | null => f && { ...f, stale: f.ageMs > staleAfterMs };
  return [...bySymbol.entries()].map(([symbol, snaps]) => {
    const rows = snaps.map((s) => ({ exchange: s.exchange, last: flag(s.price), bid: flag(s.bid), ask: flag(s.ask) }));
    const fresh = rows.flatMap((r) => (r.last && !r.last.stale ? [r.last.value] : []));
    const median = fresh.length ? medianOf(fresh) : null;
    const exchanges: ExchangeQuote[] = rows.map((r) => ({
      ...r,
      divergenceBps: r.last && median ? ((r.last.value - median) / median) * 10_000 : null,
      staleSides: (['last', 'bid', 'ask'] as const).filter((side) => r[side]?.stale),
    }));
    let best: CrossSpread | null = null;
    for (const buy of rows) {
      if (!buy.ask || buy.ask.stale) continue;
      for (const sell of rows) {
        if (sell === buy || !sell.bid || sell.bid.stale) continue;
        const bps = ((sell.bid.value - buy.ask.value) / buy.ask.value) * 10_000;
        if (best === null || bps > best.bps) {
          best = { buyExchange: buy.exchange, ask: buy.ask.value, sellExchange: sell.exchange, bid: sell.bid.value, bps };
        }
      }
    }
    return { symbol, exchanges, medianPrice: median, medianOf: fresh.length, bestSpread: best };
  });
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
