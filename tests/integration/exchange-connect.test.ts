import { describe, expect, it } from 'vitest';
import {
  ExchangesUnreachableError,
  UnknownExchangeError,
  UnlistedSymbolError,
  connectExchanges,
} from '../../layers/shared/src/adapters/exchange/ccxt-pro-exchanges.js';
import { applyEndpointOverride } from '../../layers/shared/src/adapters/exchange/endpoint-overrides.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { startSimulatedExchange } from '../../local/sim/server.js';

// A port nothing listens on: what an exchange looks like from a machine without network.
const DEAD = { rest: 'http://127.0.0.1:9/binance', ws: 'ws://127.0.0.1:9/binance/ws' };

describe('connecting exchanges', () => {
  it('fails fast when no exchange answers, naming the offline option', async () => {
    const started = Date.now();
    const error = await connectExchanges(new Map([['binance', ['BTC/USDT']]]), {
      logger: silentLogger,
      timeoutMs: 3_000,
      configure: (exchange) => applyEndpointOverride(exchange, DEAD),
    }).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(ExchangesUnreachableError);
    expect(error!.message).toContain('binance');
    expect(error!.message).toContain('npm start -- --source sim');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('connects the reachable exchange with its symbols; a symbol it does not list fails at start', async () => {
    const sim = await startSimulatedExchange({ symbols: ['BTC/USDT'], autoRun: false });
    try {
      const configure = (exchange: Parameters<typeof applyEndpointOverride>[0]) =>
        applyEndpointOverride(exchange, { rest: sim.httpUrl, ws: sim.wsUrl });
      const connected = await connectExchanges(new Map([['binance', ['BTC/USDT']]]), { logger: silentLogger, configure });
      expect(connected.map((c) => [c.exchange.id, c.symbols])).toEqual([['binance', ['BTC/USDT']]]);
      await Promise.all(connected.map((c) => c.exchange.close()));
      await expect(
        connectExchanges(new Map([['binance', ['BTC/USDT', 'NOPE/USDT']]]), { logger: silentLogger, configure }),
      ).rejects.toThrow(UnlistedSymbolError);
    } finally {
      await sim.close();
    }
  });

  it('rejects an exchange ccxt.pro does not have', async () => {
    await expect(connectExchanges(new Map([['notanexchange', ['BTC/USDT']]]), { logger: silentLogger })).rejects.toThrow(
      UnknownExchangeError,
    );
  });
});
