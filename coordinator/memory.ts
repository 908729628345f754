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

const applyV8Flags = (flags: string): void => v8.setFlagsFromString(flags);

/**
 * Relaxed heap growth while the coordinator fans a plan out to a wide batch (ADR 0022).
 *
 * At rest the coordinator runs with `--heap-growing-percent=20` (ADR 0018): a full
 * collection once the old generation is 1.2x what was live after the last one, which keeps
 * the RSS of thousands of idle sessions low. A 5,000-node fan-out allocates hundreds of
 * megabytes of short-lived objects in seconds (states, the revision document, messages,
 * gates); at 1.2x that meant a full collection of the whole ~400 MB heap every few hundred
 * milliseconds, GC threads competing with the sends for the CPU. While at least one holder
 * keeps it relaxed, V8 sizes the heap with its own heuristics (the flag set to 0: unset);
 * when the last holder releases it, the value at rest is set again, and the full collection
 * after the batch (collectNow) computes the next limit with it.
 *
 * V8 reads the flag each time it computes the next limit (after a full collection), so
 * setting it at run time takes effect from the next collection on (test/unit/heap-growth.test.ts
 * checks this on the real V8).
 */
export class HeapGrowth {
  private holders = 0;

  /**
   * @param atRest the `--heap-growing-percent` in effect at rest, or undefined when none was
   *   set (V8 sizes the heap itself: nothing to relax).
   * @param setFlags applies V8 flags (v8.setFlagsFromString).
   */
  constructor(private atRest: number | undefined, private setFlags: (flags: string) => void = applyV8Flags) {}

  /**
   * The value at rest (from the coordinator's V8 flags, coordinator/v8-flags.ts), and how
   * flags are applied (tests record them instead).
   */
  configure(atRest: number | undefined, setFlags: (flags: string) => void = applyV8Flags): void {
    this.atRest = atRest;
    this.setFlags = setFlags;
  }

  /** Relaxes heap growth until the returned function is called (once; later calls do nothing). */
  relax(): () => void {
    if (this.atRest === undefined) return () => undefined;
    if (this.holders++ === 0) this.setFlags('--heap-growing-percent=0');
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holders === 0 && this.atRest !== undefined) this.setFlags(`--heap-growing-percent=${this.atRest}`);
    };
  }

  /**
   * The `--heap-growing-percent` in effect now: 0 while relaxed (V8's own heuristics), the
   * value at rest otherwise; undefined when none was set. Logged with a wide batch's lines,
   * so the log shows the mechanism at work.
   */
  get current(): number | undefined {
    if (this.atRest === undefined) return undefined;
    return this.holders > 0 ? 0 : this.atRest;
  }

  /** Holders now (tests). */
  get relaxedBy(): number {
    return this.holders;
  }
}

/** The coordinator's heap growth; configured by coordinator/main.ts from the V8 flags in effect. */
export const heapGrowth = new HeapGrowth(undefined);

/** The `--heap-growing-percent` value in V8 `flags`, or undefined (none, or 0: V8 sizes the heap itself). */
export function heapGrowingPercent(flags: string): number | undefined {
  const m = /(?:^|\s)--heap[-_]growing[-_]percent=(\d+)(?=\s|$)/.exec(flags);
  const n = m ? Number(m[1]) : 0;
  return n > 0 ? n : undefined;
}
