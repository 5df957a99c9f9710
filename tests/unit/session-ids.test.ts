import { describe, expect, it } from 'vitest';
import { SessionIds } from '../../layers/shared/src/mcp/session-transport.js';

describe('signed MCP session ids', () => {
  const secret = new Uint8Array(32).fill(7);

  it('prove their owner to any holder of the secret, and nobody else', () => {
    const ids = new SessionIds(secret);
    const id = ids.mint('["client-a","sub-a"]');
    expect(ids.ownedBy(id, '["client-a","sub-a"]')).toBe(true);
    expect(new SessionIds(new Uint8Array(secret)).ownedBy(id, '["client-a","sub-a"]')).toBe(true);
    expect(ids.ownedBy(id, '["client-b","sub-b"]')).toBe(false);
    expect(new SessionIds(new Uint8Array(32).fill(8)).ownedBy(id, '["client-a","sub-a"]')).toBe(false);
  });

  it('refuse tampered, truncated and foreign-format ids', () => {
    const ids = new SessionIds(secret);
    const id = ids.mint('o');
    const flipped = id.slice(0, -2) + (id.endsWith('A') ? 'B' : 'A') + id.slice(-1);
    for (const bad of [flipped, id.slice(0, id.lastIndexOf('.')), '', '.', 'abc', crypto.randomUUID()]) {
      expect(ids.ownedBy(bad, 'o'), bad).toBe(false);
    }
  });

  it('stop being continued once older than the maximum age', () => {
    let now = Date.UTC(2026, 0, 1);
    const ids = new SessionIds(secret, 60_000, () => now);
    const id = ids.mint('o');
    now += 59_999;
    expect(ids.ownedBy(id, 'o')).toBe(true);
    now += 1;
    expect(ids.ownedBy(id, 'o')).toBe(false);
  });
});
