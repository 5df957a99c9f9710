export * from './stream-bus.js';
export * from './market-store.js';
export * from './clock.js';
export * from './feed-ledger.js';
