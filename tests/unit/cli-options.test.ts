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
});
