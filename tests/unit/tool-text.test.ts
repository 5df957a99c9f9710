import { describe, expect, it } from 'vitest';
import { csvTable, tableText, toolSuccess } from '../../layers/shared/src/mcp/tool-result.js';
import { expectTextTwin } from '../support/tool-text.js';

describe('tool answer text tables', () => {
  it('writes CSV cells with nulls empty and quotes only where a cell needs them', () => {
    const rows = [
      { ts: 1, note: 'plain', gap: null, ok: true },
      { ts: 2, note: 'a, "b"\nc', gap: 'open', ok: false },
    ];
    expect(csvTable(['ts', 'note', 'gap', 'ok'], rows)).toBe('ts,note,gap,ok\n1,plain,,true\n2,"a, ""b""\nc",open,false');
    expect(csvTable(['ts', ['double', (r: { ts: number }) => r.ts * 2]], rows)).toBe('ts,double\n1,2\n2,4');
  });

  it('quotes an object cell, whose JSON holds quotes and commas, so the row keeps its columns', () => {
    const rows = [{ id: 1, market: { exchange: 'binance', symbol: 'BTC/USDT' }, levels: [1, 2] }];
    expect(csvTable(['id', 'market', 'levels'], rows)).toBe('id,market,levels\n1,"{""exchange"":""binance"",""symbol"":""BTC/USDT""}","[1,2]"');
  });

  it('puts the answer without its long array first, then the array as a table the twin check reads back', () => {
    const candles = [
      { ts: 60_000, close: 101.5, feedGap: null, complete: true },
      { ts: 120_000, close: 99.25, feedGap: 'filled', complete: false },
    ];
    const answer = { symbol: 'BTC/USDT', candles, nextCursor: null };
    const text = tableText(answer, 'candles', ['ts', 'close', 'feedGap', 'complete'], candles);
    expect(text.split('\n')[0]).toBe('{"symbol":"BTC/USDT","nextCursor":null}');
    expect(text.length).toBeLessThan(JSON.stringify(answer).length);
    expectTextTwin(text, answer);
    expect(toolSuccess(answer, text)).toEqual({ content: [{ type: 'text', text }], structuredContent: answer });
    // a table that disagrees with the structured answer is caught
    expect(() => expectTextTwin(text.replace('99.25', '99.5'), answer)).toThrow();
    expect(() => expectTextTwin(text, { ...answer, nextCursor: 'x' })).toThrow();
  });
});
