export * from './stream-bus.js';
export * from './market-store.js';
export * from './clock.js';
export * from './feed-ledger.js';
export * from './market-updates.js';
export * from './signal-reader.js';
export * from './agent-memory.js';
