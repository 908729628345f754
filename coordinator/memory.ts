import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * A full collection of the coordinator's heap, asked for after a batch wider than
 * WIDE_BATCH nodes (coordinator/rollout/engine.ts). A 5,000-node fan-out promotes tens of
 * megabytes of short-lived objects (the revision being encoded, gates, records in flight);
 * V8 collects them but keeps the old-generation pages they took committed, so the process's
 * RSS stayed ~70 MB above its steady state after every wide rollout (docs/benchmarks.md,
 * ADR 0018). One full collection right after the batch releases those pages; it pauses the
 * process for a few tens of milliseconds, once per wide batch.
 *
 * V8's `gc` function is not exposed to the main context unless node starts with --expose-gc;
 * setting the flag at run time exposes it to contexts created afterwards, such as one made
 * by `vm` for the purpose. If that fails, nothing is done.
 */
let gc: (() => void) | undefined | null = null;

function collector(): (() => void) | undefined {
  if (gc === null) {
    try {
      v8.setFlagsFromString('--expose-gc');
      const f: unknown = vm.runInNewContext('gc');
      gc = typeof f === 'function' ? (f as () => void) : undefined;
    } catch {
      gc = undefined;
    }
  }
  return gc;
}

export interface Collected { heapUsedMb: [number, number]; heapTotalMb: [number, number]; rssMb: [number, number]; ms: number }

/** Runs a full collection now; undefined when V8 offers none. */
export function collectNow(): Collected | undefined {
  const f = collector();
  if (!f) return undefined;
  const mb = (x: number) => Math.round(x / 2 ** 20);
  const before = process.memoryUsage();
  const t0 = performance.now();
  f();
  const ms = Math.round(performance.now() - t0);
  const after = process.memoryUsage();
  return { heapUsedMb: [mb(before.heapUsed), mb(after.heapUsed)], heapTotalMb: [mb(before.heapTotal), mb(after.heapTotal)], rssMb: [mb(before.rss), mb(after.rss)], ms };
}
