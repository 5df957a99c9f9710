import { describe } from 'vitest';
import type { Backend } from './databases.js';
import { describeWithService } from './services.js';

/** Defines `suite` once per store backend: PGlite always, PostgreSQL when its service is there. */
export function forEachStoreBackend(title: string, suite: (backend: Backend, serverUrl?: string) => void): void {
  describe(`${title} on PGlite`, () => suite('pglite'));
  describeWithService('postgres', `${title} on PostgreSQL`, (url) => suite('postgres', url));
}
