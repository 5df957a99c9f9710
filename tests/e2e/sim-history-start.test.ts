import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bucketStart } from '../../layers/shared/src/domain/index.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { startLocalPlatform, type LocalPlatform } from '../../local/platform.js';

/**
 * `npm start -- --source sim --sim-history H`: the store holds H hours of the simulator's history
 * as 1m candles before the live market opens: the same bars the simulated exchange serves.
 */
const SYMBOLS = ['BTC/USDT', 'ETH/USDT'];
const HOURS = 3;
let platform: LocalPlatform | undefined;
let dataDir: string;
let startedAt: number;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'qicore-sim-history-'));
  startedAt = Date.now();
  platform = await startLocalPlatform({
    source: 'sim',
    markets: new Map([['binance', SYMBOLS]]),
    dataDir,
    host: '127.0.0.1',
    port: 0,
    stdio: false,
    simSeed: 11,
    simTps: 5,
    simHistoryHours: HOURS,
    logger: silentLogger,
    ephemeral: true,
  });
}, 60_000);

afterAll(async () => {
  await platform?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

it('stores the hours of history before the start as exchange 1m candles, equal to what the simulator serves', async () => {
  // the window ends at the minute the simulator started in, which may be the one after startedAt's
  const from = bucketStart(startedAt, '1m') - (HOURS * 60 + 5) * 60_000;
  for (const symbol of SYMBOLS) {
    const all = await platform!.store.candles({ exchange: 'binance', symbol, timeframe: '1m', since: from, until: Date.now() + 60_000, limit: 1_000 });
    const history = all.filter((c) => c.source === 'exchange');
    // every minute of the window: the history prints a trade every 10 s
    expect(history, symbol).toHaveLength(HOURS * 60);
    const first = history[0]!.ts;
    expect(history.map((c) => c.ts)).toEqual(Array.from({ length: HOURS * 60 }, (_, i) => first + i * 60_000));
    expect(history.at(-1)!.ts).toBeGreaterThanOrEqual(bucketStart(startedAt, '1m') - 60_000);
    const served = await platform!.sim!.market.klines(symbol, '1m', { startTime: first, endTime: history.at(-1)!.ts, limit: 1_000 });
    expect(history.map((c) => [c.ts, c.open, c.high, c.low, c.close])).toEqual(
      served.map((k) => [k.openTime, Number(k.open), Number(k.high), Number(k.low), Number(k.close)]),
    );
  }
});
