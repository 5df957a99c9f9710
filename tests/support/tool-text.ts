import { expect } from 'vitest';

type Json = Record<string, unknown>;

/** Splits a CSV line written by csvTable (quoted cells only where needed). */
function cells(line: string): string[] {
  const out: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') (cell += '"'), i++;
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') out.push(cell), (cell = '');
    else cell += ch;
  }
  out.push(cell);
  return out;
}

const cellOf = (v: unknown) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** `rows` as the cells a table with `header` must hold: each field by name, indicator values from `values`. */
function expectedRows(header: readonly string[], rows: readonly Json[]): string[][] {
  return rows.map((row) => header.map((h) => cellOf(h in row ? row[h] : (row['values'] as Json | undefined)?.[h])));
}

/**
 * Checks that a tool answer's text says what its structuredContent says: either the same JSON, or
 * (long answers) the JSON without its long arrays followed by those arrays as CSV tables.
 */
export function expectTextTwin(text: string, structured: Json): void {
  try {
    expect(JSON.parse(text)).toEqual(structured);
    return;
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
  }
  const [head, ...rest] = text.split('\n');
  const sections: { title: string; header: string[]; rows: string[][] }[] = [];
  for (const line of rest) {
    if (/^\S.* \(\d+, CSV/.test(line)) sections.push({ title: line, header: [], rows: [] });
    else if (sections.at(-1)!.header.length === 0) sections.at(-1)!.header = cells(line);
    else sections.at(-1)!.rows.push(cells(line));
  }
  const headJson = JSON.parse(head!) as Json;
  if (Array.isArray(structured['results'])) {
    // compute_indicators: results without points in the head, one table of points per result
    const results = structured['results'] as Json[];
    expect(headJson).toEqual({ ...structured, results: results.map(({ points: _p, ...r }) => r) });
    expect(sections.length).toBe(results.length);
    results.forEach((r, i) => {
      expect(sections[i]!.title.startsWith(`${String(r['name'])} points`)).toBe(true);
      expect(sections[i]!.rows).toEqual(expectedRows(sections[i]!.header, r['points'] as Json[]));
    });
    return;
  }
  expect(sections.length).toBe(1);
  const key = sections[0]!.title.split(' ')[0]!;
  const { [key]: rows, ...others } = structured;
  expect(headJson).toEqual(others);
  // every field of the rows is a column (in any order)
  if ((rows as Json[]).length > 0) expect([...sections[0]!.header].sort()).toEqual(Object.keys((rows as Json[])[0]!).sort());
  expect(sections[0]!.rows).toEqual(expectedRows(sections[0]!.header, rows as Json[]));
}
