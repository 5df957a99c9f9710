// The simulator's OKX book checksum is the shared module's: tests/unit/okx-book-checksum.test.ts.
import { describe, expect, it } from 'vitest';
import { okxDecimal } from '../../local/sim/protocols/okx.js';


describe('OKX decimal formatting', () => {
  it('drops trailing zeros like the OKX API', () => {
    expect(okxDecimal('65000.10')).toBe('65000.1');
    expect(okxDecimal('65000.00')).toBe('65000');
    expect(okxDecimal('0.00100')).toBe('0.001');
    expect(okxDecimal('120')).toBe('120');
    expect(okxDecimal('-0.000')).toBe('0');
  });
});
