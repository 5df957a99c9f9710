import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { parseLocalOptions, parseMarkets } from '../../local/cli-options.js';

describe('local runner options', () => {
  it('defaults to live binance, coinbase and kraken on 127.0.0.1', () => {
    const o = parseLocalOptions([], {});
    expect(o.source).toBe('live');
    expect([...o.markets.keys()]).toEqual(['binance', 'coinbase', 'kraken']);
    expect(o.host).toBe('127.0.0.1');
    expect(o.port).toBe(8787);
  });

  it('takes flags over environment variables', () => {
    const o = parseLocalOptions(['--source', 'sim', '--port', '0'], { SOURCE: 'live', MCP_PORT: '9000', SIM_TPS: '20' });
    expect(o.source).toBe('sim');
    expect(o.port).toBe(0);
    expect(o.simTps).toBe(20);
    expect(o.markets.get('binance')).toEqual(['BTC/USDT', 'ETH/USDT', 'SOL/USDT']);
  });

  it('serves every toolset by default, or those of --toolsets (over MCP_TOOLSETS), and names an unknown one', () => {
    expect(parseLocalOptions([], {}).toolsets).toEqual(['market', 'analysis', 'signals', 'memory', 'agents']);
    expect(parseLocalOptions([], { MCP_TOOLSETS: 'market' }).toolsets).toEqual(['market']);
    expect(parseLocalOptions(['--toolsets', 'market,memory'], { MCP_TOOLSETS: 'market' }).toolsets).toEqual(['market', 'memory']);
    expect(() => parseLocalOptions(['--toolsets', 'market,trading'], {})).toThrow(ConfigError);
    expect(() => parseLocalOptions(['--toolsets', 'market,trading'], {})).toThrow(/unknown toolset trading/);
  });

  it('reads alert rules from --alert-rules (JSON or @file, over ALERT_RULES) and names a bad one', async () => {
    const rule = { id: 'btc-100k', kind: 'price_cross', exchange: 'binance', symbol: 'BTC/USDT', level: 100_000, direction: 'up' };
    expect(parseLocalOptions([], {}).alertRules).toEqual([]);
    expect(parseLocalOptions([], { ALERT_RULES: JSON.stringify([rule]) }).alertRules.map((r) => r.id)).toEqual(['btc-100k']);
    const dir = await mkdtemp(join(tmpdir(), 'rules-'));
    await writeFile(join(dir, 'rules.json'), JSON.stringify([{ ...rule, id: 'from-file' }]));
    expect(parseLocalOptions(['--alert-rules', `@${join(dir, 'rules.json')}`], { ALERT_RULES: JSON.stringify([rule]) }).alertRules.map((r) => r.id)).toEqual(['from-file']);
    expect(() => parseLocalOptions(['--alert-rules', '[{"id":"x","kind":"price_cross"}]'], {})).toThrow(ConfigError);
    expect(() => parseLocalOptions(['--alert-rules', '@/nonexistent/rules.json'], {})).toThrow(/--alert-rules: cannot read/);
    await rm(dir, { recursive: true });
  });

  it('names the bad flag', () => {
    expect(() => parseLocalOptions(['--sourse', 'sim'], {})).toThrow(ConfigError);
    expect(() => parseLocalOptions(['--sourse', 'sim'], {})).toThrow(/sourse/);
    expect(() => parseLocalOptions(['--source', 'paper'], {})).toThrow(/--source must be live or sim/);
    expect(() => parseLocalOptions(['--port', '70000'], {})).toThrow(/--port must be at most 65535/);
    expect(() => parseLocalOptions(['--port', 'abc'], {})).toThrow(/--port/);
  });

  it('parses and checks market specs', () => {
    expect(parseMarkets('binance:BTC/USDT, ETH/USDT ; okx:BTC/USDT;binance:BTC/USDT')).toEqual(
      new Map([
        ['binance', ['BTC/USDT', 'ETH/USDT']],
        ['okx', ['BTC/USDT']],
      ]),
    );
    expect(() => parseMarkets('binance')).toThrow(/exchange:BASE\/QUOTE/);
    expect(() => parseMarkets('Binance!:BTC/USDT')).toThrow(/exchange id/);
    expect(() => parseMarkets('binance:BTCUSDT')).toThrow(/unified symbol/);
  });

  it('collects only the --shard (or SHARD) part of the markets, and names a bad or empty shard', () => {
    const six = 'binance:BTC/USDT,ETH/USDT;coinbase:BTC/USD,ETH/USD;kraken:BTC/USD,ETH/USD';
    const first = parseLocalOptions(['--source', 'sim', '--markets', six, '--shard', '0/2'], {});
    const second = parseLocalOptions(['--source', 'sim', '--markets', six], { SHARD: '1/2' });
    expect(second.shard).toEqual({ index: 1, count: 2 });
    // the two halves are disjoint and cover the six markets
    const flat = (m: ReadonlyMap<string, readonly string[]>) => [...m].flatMap(([e, ss]) => ss.map((s) => `${e}:${s}`));
    expect([...flat(first.markets), ...flat(second.markets)].sort()).toEqual(flat(parseMarkets(six)).sort());
    expect(flat(first.markets).filter((m) => flat(second.markets).includes(m))).toEqual([]);
    expect(() => parseLocalOptions(['--shard', '2/2'], {})).toThrow(/0\/2 or 1\/2/);
    expect(() => parseLocalOptions(['--markets', 'binance:BTC/USDT', '--shard', '0/2'], {})).toThrow(/gets none of the 1 markets/);
    expect(parseLocalOptions([], {}).shard).toEqual({ index: 0, count: 1 });
  });

  it('fills 4 days of simulated history for the agents by default, none otherwise, and names a bad --sim-history', () => {
    expect(parseLocalOptions(['--source', 'sim', '--agents'], {}).simHistoryHours).toBe(96);
    expect(parseLocalOptions(['--source', 'sim'], {}).simHistoryHours).toBe(0);
    expect(parseLocalOptions(['--source', 'sim', '--agents', '--sim-history', '30'], {}).simHistoryHours).toBe(30);
    expect(parseLocalOptions(['--source', 'sim'], { SIM_HISTORY_HOURS: '12' }).simHistoryHours).toBe(12);
    // live exchanges have their own history: the flag is for the simulator only
    expect(parseLocalOptions(['--agents', '--sim-history', '30'], {}).simHistoryHours).toBe(0);
    expect(() => parseLocalOptions(['--source', 'sim', '--sim-history=-1'], {})).toThrow(/--sim-history must be at least 0/);
    expect(() => parseLocalOptions(['--source', 'sim', '--sim-history', 'lots'], {})).toThrow(/--sim-history/);
  });
});
