import { describe, expect, it } from 'vitest';
import { AlertEngine, type AlertCounter } from '../../layers/shared/src/alerts/alert-engine.js';
import { parseAlertRules } from '../../layers/shared/src/alerts/alert-rules.js';
import { createAlertsConsumerHandler } from '../../layers/shared/src/consumers/alerts-consumer.js';
import type { Signal } from '../../layers/shared/src/domain/index.js';
import { Counters } from '../../layers/shared/src/observability/counters.js';
import { silentLogger } from '../../layers/shared/src/observability/logger.js';
import { localContext } from '../../local/runner/polling-event-source.js';
import { SignalService } from '../../layers/shared/src/query/signal-service.js';
import { encodeEvents } from '../../layers/shared/src/stream/event-codec.js';
import { T0, kinesisEvent, trade } from '../fixtures/events.js';

/** A signal store that can be made to fail, like a database going away. */
class FlakySignals {
  readonly rows: Signal[] = [];
  failures = 0;
  async writeSignals(signals: readonly Signal[]): Promise<number> {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('connection refused');
    }
    this.rows.push(...signals);
    return signals.length;
  }
  async readSignals(): Promise<readonly Signal[]> {
    return this.rows;
  }
}

function setup() {
  const clock = { now: () => T0 };
  const store = new FlakySignals();
  const counters = new Counters<AlertCounter>();
  const engine = new AlertEngine({
    rules: parseAlertRules([
      { id: 'up', kind: 'price_cross', level: 100, direction: 'up', cooldownMs: 0 },
      { id: 'down', kind: 'price_cross', level: 100, direction: 'down', cooldownMs: 0 },
    ]),
    signals: new SignalService({ writer: store, reader: store, clock }),
    clock,
    counters,
    logger: silentLogger,
  });
  const handler = createAlertsConsumerHandler({ engine, counters, logger: silentLogger });
  return { store, counters, handler };
}

const record = (...events: Parameters<typeof trade>[0][]) => encodeEvents(events.map((e) => trade(e)));

describe('alerts consumer (Lambda handler)', () => {
  it('publishes what fires, skips and counts bad records and events', async () => {
    const { store, counters, handler } = setup();
    const bad = new TextEncoder().encode('{"v":1,"events":[{"type":"trade","price":-1}]}');
    const event = kinesisEvent([record({ price: 99 }), new TextEncoder().encode('not json'), bad, record({ price: 101, ts: T0 + 1 })]);
    expect(await handler(event, localContext())).toEqual({ batchItemFailures: [] });
    expect(store.rows.map((s) => s.direction)).toEqual(['long']);
    expect(counters.snapshot()).toMatchObject({ records: 4, records_unreadable: 1, events_rejected: 1, events: 2, 'fired.up': 1, 'published.up': 1 });
  });

  it('reports the record whose signal failed to store, and publishes its firings on redelivery without evaluating it twice', async () => {
    const { store, counters, handler } = setup();
    store.failures = 1;
    // record 2 fires up then down; the first publish fails
    const event = kinesisEvent([record({ price: 99 }), record({ price: 101, ts: T0 + 1 }, { price: 99, ts: T0 + 2 }), record({ price: 101, ts: T0 + 3 })]);
    expect(await handler(event, localContext())).toEqual({ batchItemFailures: [{ itemIdentifier: '2' }] });
    expect(store.rows).toEqual([]);
    expect(counters.get('failed.up')).toBe(1);
    // the event source redelivers from the failed record on
    const retry = { Records: event.Records.slice(1) };
    expect(await handler(retry, localContext())).toEqual({ batchItemFailures: [] });
    expect(store.rows.map((s) => s.direction)).toEqual(['long', 'short', 'long']);
    expect(counters.get('records')).toBe(3); // record 2 decoded once
    expect(counters.get('fired.up')).toBe(2);
  });
});
