export * from './symbols.js';
export * from './timeframes.js';
export * from './events.js';
export * from './errors.js';
export * from './issues.js';
export * from './feed-health.js';
