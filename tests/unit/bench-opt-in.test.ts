import { describe, expect, it } from 'vitest';
import { benchFiles, OPT_IN_BENCHES, parseCli } from '../../bench/run.js';

const files = ['collector-memory.bench.ts', 'collector-path.bench.ts', 'collector-throughput.bench.ts', 'README.md', 'run.ts'];

describe('bench runner: opt-in benches', () => {
  it('leaves collector-memory out of a plain run and of a filter that matches it', () => {
    expect(OPT_IN_BENCHES).toContain('collector-memory');
    expect(benchFiles(files)).toEqual(['collector-path.bench.ts', 'collector-throughput.bench.ts']);
    expect(benchFiles(files, 'collector-')).toEqual(['collector-path.bench.ts', 'collector-throughput.bench.ts']);
  });

  it('runs exactly the benches named as arguments, opt-in ones included', () => {
    expect(parseCli(['collector-memory', '--quick']).names).toEqual(['collector-memory']);
    expect(parseCli(['--quick']).names).toBeUndefined();
    expect(benchFiles(files, undefined, ['collector-memory'])).toEqual(['collector-memory.bench.ts']);
    expect(benchFiles(files, undefined, ['collector-path', 'collector-memory'])).toEqual(['collector-memory.bench.ts', 'collector-path.bench.ts']);
  });

  it('names the benches there are when a name matches none (no partial names: that is --filter)', () => {
    expect(() => benchFiles(files, undefined, ['collector'])).toThrow(
      'no bench named collector; there are: collector-memory, collector-path, collector-throughput',
    );
  });
});
