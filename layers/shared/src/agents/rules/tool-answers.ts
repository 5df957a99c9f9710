import type { AgentToolResult, MarketRef, RunContext } from '../contracts.js';
import type { RuleCandle } from './candle-figures.js';

/**
 * The parts of tool answers the rules agents read. The SDK's Client has already checked every
 * structured answer against the tool's output schema, so these are views, not validation.
 */

export interface FeedHealthView {
  readonly exchange: string;
  readonly symbol: string;
  readonly channel: string;
  readonly status: 'ok' | 'degraded' | 'stale' | 'silent';
  readonly lastMessageAgeMs: number | null;
  readonly gapsUnfilled: number;
  readonly gapsOpen: number;
}

export interface ListedMarket {
  readonly exchange: string;
  readonly symbol: string;
  readonly channels: Partial<Record<'trades' | 'tickers' | 'books' | 'quotes' | 'candles', { lastTs: number; ageMs: number }>>;
}

export interface PositionView {
  readonly exchange: string;
  readonly symbol: string;
  readonly quantity: number;
  readonly averageCost: number;
  readonly markPrice: number;
  readonly value: number;
}

export interface PortfolioView {
  readonly account: string;
  readonly cash: number;
  readonly equity: number;
  readonly peakEquity: number;
  readonly drawdownPct: number;
  readonly dailyNotional: number;
  readonly positions: readonly PositionView[];
}

/** One call's answer, or the reason there is none (a tool error result). */
export type Answer<T> = { ok: true; value: T } | { ok: false; error: string };

export async function ask<T>(ctx: RunContext, tool: string, args: Record<string, unknown>): Promise<Answer<T>> {
  const result: AgentToolResult = await ctx.tools.call(tool, args);
  if (result.isError) return { ok: false, error: `${tool}: ${result.text.slice(0, 500)}` };
  return { ok: true, value: result.structured as T };
}

export const marketKey = (m: MarketRef): string => `${m.exchange}:${m.symbol}`;

/** The trade feed's health of one market (the channel candles are built from); null when not reported. */
export function tradeFeedOf(feeds: readonly FeedHealthView[], m: MarketRef): FeedHealthView | null {
  return feeds.find((f) => f.exchange === m.exchange && f.symbol === m.symbol && f.channel === 'trades') ?? null;
}

/** Why a market's data cannot be trusted, or null when its trade feed is ok. */
export function healthProblem(feed: FeedHealthView | null): string | null {
  if (feed === null) return 'no data health reported for its trade feed';
  if (feed.status === 'ok') return null;
  const figures = [
    feed.lastMessageAgeMs !== null && `last message ${Math.round(feed.lastMessageAgeMs / 1000)} s ago`,
    feed.gapsUnfilled > 0 && `${feed.gapsUnfilled} unfilled gaps`,
    feed.gapsOpen > 0 && `${feed.gapsOpen} gaps being filled`,
  ].filter(Boolean);
  return `trade feed ${feed.status}${figures.length ? ` (${figures.join(', ')})` : ''}`;
}

export async function readCandles(ctx: RunContext, m: MarketRef, timeframe: string, limit: number): Promise<Answer<RuleCandle[]>> {
  const a = await ask<{ candles: RuleCandle[] }>(ctx, 'get_candles', { exchange: m.exchange, symbol: m.symbol, timeframe, limit });
  return a.ok ? { ok: true, value: a.value.candles } : a;
}
