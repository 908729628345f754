import v8 from 'node:v8';

/** Where a process's memory goes, as V8 and Node see it (KiB). */
export interface MemoryReport {
  /** Resident set size (process.memoryUsage().rss). */
  rssKb: number;
  /** V8 heap committed (all spaces) and in use. */
  heapTotalKb: number;
  heapUsedKb: number;
  /** Memory V8 knows is held outside its heap by JS objects (Buffers, ArrayBuffers). */
  externalKb: number;
  arrayBuffersKb: number;
  /** Committed size of each V8 heap space (new_space, old_space, code_space, ...). */
  spaces: Record<string, { sizeKb: number; usedKb: number }>;
}

const kb = (n: number) => Math.round(n / 1024);

/** A snapshot of this process's memory (cheap: no heap walk). */
export function memoryReport(): MemoryReport {
  const m = process.memoryUsage();
  const spaces: MemoryReport['spaces'] = {};
  for (const s of v8.getHeapSpaceStatistics()) {
    if (s.space_size > 0) spaces[s.space_name] = { sizeKb: kb(s.space_size), usedKb: kb(s.space_used_size) };
  }
  return { rssKb: kb(m.rss), heapTotalKb: kb(m.heapTotal), heapUsedKb: kb(m.heapUsed), externalKb: kb(m.external), arrayBuffersKb: kb(m.arrayBuffers), spaces };
}

/**
 * On SIGUSR2, calls `report` with a memory snapshot (the agent logs it: `systemctl kill -s
 * USR2 kb-agent`; bench/agent-footprint reads it). Does nothing else, costs nothing until then.
 */
export function reportMemoryOnSignal(report: (m: MemoryReport) => void): void {
  process.on('SIGUSR2', () => report(memoryReport()));
}
