import { readFileSync, statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import type { NodeFacts } from '../proto/types.js';

/**
 * Node facts for health reports, read from /proc and statfs directly (cheap: no child
 * processes, no polling library kept in memory). CPU percent is measured between two
 * successive calls. The OS description comes from /etc/os-release once at start-up.
 */
export class FactsCollector {
  private lastCpu: { idle: number; total: number } | undefined;
  private osName = `${os.type()} ${os.release()}`;

  constructor(private readonly dataDir: string, private dockerVersion = '') {}

  setDockerVersion(v: string): void {
    this.dockerVersion = v;
  }

  /**
   * Loads the OS description from /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)
   * (6.1.0-18-amd64)". Never throws: without the file, the os module's answer stays.
   */
  async describeOs(file = '/etc/os-release'): Promise<void> {
    try {
      const name = osReleaseName(await readFile(file, 'utf8'));
      if (name) this.osName = `${name} (${os.release()})`;
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

/** PRETTY_NAME of an os-release file (os-release(5)), else NAME VERSION; '' when neither. */
export function osReleaseName(text: string): string {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars.set(m[1]!, m[2]!.replace(/^(["'])(.*)\1$/, '$2'));
  }
  return vars.get('PRETTY_NAME') || [vars.get('NAME'), vars.get('VERSION')].filter(Boolean).join(' ');
}
