import { describe, expect, it } from 'vitest';
import { benchSection, upsertBenchSection } from '../../bench/lib/docs.js';

// How every benchmark writes its results into docs/benchmarks.md (bench/lib/docs.ts).

describe('benchmark sections of docs/benchmarks.md', () => {
  const at = new Date(Date.UTC(2026, 10, 28, 7, 33));

  it('a section names the benchmark, the time, the exact command and the machine', () => {
    const s = benchSection('fleet', 'npm run bench -- fleet --nodes 5000', '- CPU: 2 cores', '| a | b |', at);
    expect(s.split('\n')).toEqual([
      '<!-- bench:fleet:start (written by bench/fleet/main.ts) -->',
      'Measured 2026-11-28 07:33 UTC with `npm run bench -- fleet --nodes 5000` on:',
      '',
      '- CPU: 2 cores',
      '',
      '| a | b |',
      '<!-- bench:fleet:end -->',
    ]);
  });

  it('replaces only its own section, keeps the text around and the other benchmarks\' sections, and appends when absent', () => {
    const other = benchSection('redis-failover', 'x', 'm', 'old redis', at);
    const doc = `# kb benchmarks\n\nintro\n\n${benchSection('fleet', 'c', 'm', 'old fleet', at)}\n\nreading\n\n${other}\n`;
    const next = upsertBenchSection(doc, 'fleet', benchSection('fleet', 'c', 'm', 'new fleet with $& and $1', at));
    expect(next).toContain('new fleet with $& and $1');
    expect(next).not.toContain('old fleet');
    expect(next).toContain('old redis');
    expect(next.startsWith('# kb benchmarks\n\nintro\n\n')).toBe(true);
    expect(next).toContain('\n\nreading\n\n');
    const appended = upsertBenchSection('# kb benchmarks\n', 'agent-footprint', benchSection('agent-footprint', 'c', 'm', 'first', at));
    expect(appended).toBe(`# kb benchmarks\n\n${benchSection('agent-footprint', 'c', 'm', 'first', at)}\n`);
  });
});
