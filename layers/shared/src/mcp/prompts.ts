import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { GetPromptResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { SymbolSchema } from '../domain/index.js';
import { TimeframeSchema } from '../domain/timeframes.js';

/**
 * Prompt templates: step plans written against the tools this session offers. A step whose tool
 * the session lacks (toolset off, scope missing) is left out rather than named, so the model
 * never plans with a tool it cannot call.
 */
export function registerPrompts(server: McpServer, offered: ReadonlySet<string>): void {
  const has = (tool: string) => offered.has(tool);
  if (!has('get_candles')) return;

  server.registerPrompt(
    'market_analysis',
    {
      title: 'Market analysis',
      description:
        'A step-by-step technical analysis of one market: data health first, then price, trend, momentum, ' +
        'volatility, patterns and cross-exchange context, ending in a direction with the numbers behind it.',
      argsSchema: {
        symbol: SymbolSchema.describe('ccxt unified symbol, e.g. BTC/USDT'),
        exchange: z.string().max(32).optional().describe('ccxt exchange id, e.g. binance; every exchange holding the symbol when omitted'),
        timeframe: TimeframeSchema.optional().describe('candle timeframe, e.g. 1h (the default)'),
      },
    },
    ({ symbol, exchange, timeframe }): GetPromptResult => {
      const tf = timeframe ?? '1h';
      const market = exchange ? `${symbol} on ${exchange}` : `${symbol} (every exchange that holds it)`;
      const steps = [
        has('get_data_health') && `Call get_data_health for ${symbol}. If its feeds are stale or have unfilled gaps, say so first and weigh every later figure accordingly.`,
        has('get_market_snapshot') && `Call get_market_snapshot for ${symbol}: last price, 24h change and volume, spread, and the age of each figure.`,
        `Call get_candles (timeframe ${tf}, the last 200) and describe the trend: higher highs/lows or not, where price sits in the recent range. Gaps are listed, never drawn as flat candles: mention any.`,
        has('compute_indicators') && `Call compute_indicators (timeframe ${tf}) for RSI, MACD, EMA 20/50, Bollinger Bands, ATR and ADX. Quote the latest values with their timestamps.`,
        has('detect_patterns') && `Call detect_patterns (timeframe ${tf}) for recent candlestick patterns; only closed candles count.`,
        has('compare_exchanges') && `Call compare_exchanges for ${symbol} to see whether exchanges diverge (bps from the median, stale sides).`,
        has('render_chart') && `Optionally call render_chart (timeframe ${tf}, overlays ema and bbands) to look at the picture.`,
        has('get_signals') && `Call get_signals for ${symbol} to see what other agents concluded recently.`,
        `Conclude: direction (long, short or flat), strength and confidence between 0 and 1, the horizon, and a rationale that cites each number you used with its timestamp. Say what would invalidate the view.`,
        has('publish_signal') && `If the evidence is clear and the data healthy, publish the conclusion with publish_signal; otherwise explain why you did not.`,
      ].filter((s): s is string => typeof s === 'string');
      return userPrompt(`Analyse ${market} on the ${tf} timeframe using this server's tools, in this order:\n${numbered(steps)}`);
    },
  );

  server.registerPrompt(
    'risk_review',
    {
      title: 'Risk review',
      description:
        'Review a proposed position before acting on it: data health, volatility-based stop and size, liquidity ' +
        'and spread, cross-exchange divergence and conflicting signals; ends with approve, resize or reject and the reason.',
      argsSchema: {
        symbol: SymbolSchema.describe('ccxt unified symbol, e.g. BTC/USDT'),
        direction: z.enum(['long', 'short']).describe('the proposed side'),
        notional: z.string().regex(/^\d+(\.\d+)?$/, 'a positive number').optional().describe('proposed position size in quote currency, e.g. 10000'),
        exchange: z.string().max(32).optional().describe('ccxt exchange id the position would be on'),
      },
    },
    ({ symbol, direction, notional, exchange }): GetPromptResult => {
      const where = exchange ? ` on ${exchange}` : '';
      const size = notional ? ` of ${notional} (quote currency)` : '';
      const steps = [
        has('get_data_health') && `Call get_data_health for ${symbol}. Reject if the feed is stale or has unfilled gaps in the last day: decisions on missing data are not safe.`,
        has('get_order_book') && exchange && `Call get_order_book for ${symbol} on ${exchange}: check the book's health state, the spread and whether the top levels could absorb the size.`,
        has('get_market_snapshot') && `Call get_market_snapshot for ${symbol}: spread and 24h volume; a size above about 1% of 24h volume needs resizing.`,
        has('compute_indicators') && `Call compute_indicators with ATR(14) on 1h and 1d candles: put the stop about 2 ATR away and size so the loss at the stop stays within the limit you were given.`,
        has('compare_exchanges') && `Call compare_exchanges for ${symbol}: a large divergence between exchanges is a reason to wait.`,
        has('get_signals') && `Call get_signals for ${symbol}: list signals that disagree with ${direction} and weigh them.`,
        has('recall') && `Call recall with the prefix "risk:" to see earlier decisions and limits you stored.`,
        `Decide: approve, resize (give the new size) or reject, with the reasons and every number used, each with its timestamp.`,
        has('remember') && `Store the decision with remember (key "risk:${symbol}:<date>") so later reviews can see it.`,
      ].filter((s): s is string => typeof s === 'string');
      return userPrompt(`Review the proposed ${direction} position${size} in ${symbol}${where} using this server's tools, in this order:\n${numbered(steps)}`);
    },
  );
}

function numbered(steps: readonly string[]): string {
  return steps.map((s, i) => `${i + 1}. ${s}`).join('\n');
}

function userPrompt(text: string): GetPromptResult {
  return { messages: [{ role: 'user', content: { type: 'text', text } }] };
}
