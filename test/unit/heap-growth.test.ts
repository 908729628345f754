import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { HeapGrowth, heapGrowingPercent } from '../../coordinator/memory.js';

describe('heapGrowingPercent', () => {
  it('reads --heap-growing-percent from V8 flags, and nothing from flags without it or with 0', () => {
    expect(heapGrowingPercent('--heap-growing-percent=20')).toBe(20);
    expect(heapGrowingPercent('--max-semi-space-size=16 --heap_growing_percent=35')).toBe(35);
    expect(heapGrowingPercent('')).toBeUndefined();
    expect(heapGrowingPercent('--heap-growing-percent=0')).toBeUndefined();
    expect(heapGrowingPercent('--heap-growing-percent=20x')).toBeUndefined();
    expect(heapGrowingPercent('--no-heap-growing-percent=20')).toBeUndefined();
  });
});

describe('HeapGrowth', () => {
  it('relaxes on the first holder, restores the value at rest when the last one releases, and ignores a second release', () => {
    const set: string[] = [];
    const g = new HeapGrowth(20, (f) => set.push(f));
    expect(g.current).toBe(20);
    const a = g.relax();
    const b = g.relax();
    expect(set).toEqual(['--heap-growing-percent=0']);
    expect(g.relaxedBy).toBe(2);
    expect(g.current).toBe(0);
    a();
    a(); // a holder releasing twice must not release another's hold
    expect(g.relaxedBy).toBe(1);
    expect(set).toEqual(['--heap-growing-percent=0']);
    expect(g.current).toBe(0);
    b();
    expect(g.relaxedBy).toBe(0);
    expect(g.current).toBe(20);
    expect(set).toEqual(['--heap-growing-percent=0', '--heap-growing-percent=20']);
    g.relax()();
    expect(set).toEqual(['--heap-growing-percent=0', '--heap-growing-percent=20', '--heap-growing-percent=0', '--heap-growing-percent=20']);
  });

  it('does nothing when no heap growth was set at rest (V8 sizes the heap itself)', () => {
    const set: string[] = [];
    const g = new HeapGrowth(undefined, (f) => set.push(f));
    const release = g.relax();
    expect(g.current).toBeUndefined();
    release();
    expect(set).toEqual([]);
    expect(g.relaxedBy).toBe(0);
  });

  // The mechanism on the real V8: a process started with --heap-growing-percent=20 turns over
  // objects that live long enough to be promoted (as a coordinator's do during a fan-out).
  // Set to 0 at run time, as relax() does, it runs far fewer full collections; set back to 20,
  // as the last release does, it runs as many as it did at rest.
  it('on the real V8, setting the flag at run time changes how often the old generation is collected', () => {
    const script = `
      const v8 = require('node:v8');
      const { PerformanceObserver, constants } = require('node:perf_hooks');
      for (const f of process.argv.slice(1)) v8.setFlagsFromString(f);
      let major = 0;
      const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++; });
      obs.observe({ entryTypes: ['gc'] });
      const ring = new Array(300000).fill(null);
      for (let i = 0; i < 3000000; i++) ring[i % ring.length] = { i, s: 'object ' + i };
      setTimeout(() => { obs.disconnect(); process.stdout.write(String(major)); }, 100);`;
    const majors = (...flags: string[]) => {
      const r = spawnSync(process.execPath, ['--heap-growing-percent=20', '-e', script, ...flags], { encoding: 'utf8', timeout: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return Number(r.stdout);
    };
    const atRest = majors();
    const relaxed = majors('--heap-growing-percent=0');
    const restored = majors('--heap-growing-percent=0', '--heap-growing-percent=20');
    expect(relaxed).toBeGreaterThan(0);
    expect(atRest).toBeGreaterThanOrEqual(relaxed + 3);
    expect(restored).toBeGreaterThanOrEqual(relaxed + 3);
  });
});
