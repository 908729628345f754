import { describe, expect, it } from 'vitest';
import { collectNow } from '../../coordinator/memory.js';

describe('collectNow', () => {
  it('runs a full collection without --expose-gc on the command line, and reports the heap before and after', () => {
    expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
    let garbage: string[] | undefined = Array.from({ length: 200_000 }, (_, i) => `object ${i} `.repeat(8));
    expect(garbage.length).toBe(200_000);
    garbage = undefined;
    const c = collectNow();
    expect(c).toBeDefined();
    // ~60 MB of strings were reachable a moment ago and are not any more.
    expect(c!.heapUsedMb[1]).toBeLessThan(c!.heapUsedMb[0] - 30);
    expect(c!.ms).toBeGreaterThanOrEqual(0);
  });
});
