import { scrub } from '../../shared/log/index.js';

/**
 * kbctl's output. Everything a user reads goes through here (stdout for results,
 * stderr for errors), so secrets can be kept out in one place and tests can capture it:
 * any secret value kbctl holds (`secrets import` reads some) is replaced by "[redacted]".
 */
export interface Printer {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: Printer = {
  out: (text) => void process.stdout.write(scrub(text.endsWith('\n') ? text : `${text}\n`)),
  err: (text) => void process.stderr.write(scrub(text.endsWith('\n') ? text : `${text}\n`)),
};

/** Renders rows as an aligned text table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  if (!n) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v >= 10 || u === 0 ? 0 : 1)}${units[u]}`;
}

export function ago(ms: number, now = Date.now()): string {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}

export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

export { parseDuration } from '../../shared/duration/index.js';
