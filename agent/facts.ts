import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import type { NodeFacts } from '../proto/types.js';

/**
 * Node facts for health reports, read from /proc and statfs directly (cheap: no child
 * processes, no polling library kept in memory). CPU percent is measured between two
 * successive calls. systeminformation gives the OS description once at start-up.
 */
export class FactsCollector {
  private lastCpu: { idle: number; total: number } | undefined;
  private osName = `${os.type()} ${os.release()}`;

  constructor(private readonly dataDir: string, private dockerVersion = '') {}

  setDockerVersion(v: string): void {
    this.dockerVersion = v;
  }

  /** Loads the OS description with systeminformation (lazily imported). Never throws. */
  async describeOs(): Promise<void> {
    try {
      const si = await import('systeminformation');
      const info = await si.osInfo();
      this.osName = `${info.distro} ${info.release} (${info.kernel})`;
    } catch { /* keep the os module's answer */ }
  }

  collect(): NodeFacts {
    let disk = { total: 0, used: 0 };
    try {
      const s = statfsSync(this.dataDir);
      disk = { total: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize };
    } catch { /* data dir missing: report 0 */ }
    const mem = readMeminfo();
    return {
      cpuPercent: this.cpuPercent(),
      memTotalBytes: mem.total,
      memUsedBytes: mem.total - mem.available,
      diskTotalBytes: disk.total,
      diskUsedBytes: disk.used,
      dockerVersion: this.dockerVersion,
      uptimeS: Math.round(os.uptime()),
      os: this.osName,
    };
  }

  private cpuPercent(): number {
    let idle = 0;
    let total = 0;
    for (const c of os.cpus()) {
      const t = c.times;
      idle += t.idle;
      total += t.user + t.nice + t.sys + t.idle + t.irq;
    }
    const prev = this.lastCpu;
    this.lastCpu = { idle, total };
    if (!prev || total === prev.total) return 0;
    return Math.max(0, Math.min(100, 100 * (1 - (idle - prev.idle) / (total - prev.total))));
  }
}

function readMeminfo(): { total: number; available: number } {
  try {
    const text = readFileSync('/proc/meminfo', 'utf8');
    const get = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { total: get('MemTotal'), available: get('MemAvailable') };
  } catch {
    return { total: os.totalmem(), available: os.freemem() };
  }
}
