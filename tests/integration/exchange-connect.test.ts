import { describe, expect, it } from 'vitest';
import {
  ExchangesUnreachableError,
  UnknownExchangeError,
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

  it('keeps the reachable exchange and the symbols it lists, skipping the rest', async () => {
    const sim = await startSimulatedExchange({ symbols: ['BTC/USDT'], autoRun: false });
    try {
      const connected = await connectExchanges(new Map([['binance', ['BTC/USDT', 'NOPE/USDT']]]), {
        logger: silentLogger,
        configure: (exchange) => applyEndpointOverride(exchange, { rest: sim.httpUrl, ws: sim.wsUrl }),
      });
      expect(connected.map((c) => [c.exchange.id, c.symbols])).toEqual([['binance', ['BTC/USDT']]]);
      await Promise.all(connected.map((c) => c.exchange.close()));
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
