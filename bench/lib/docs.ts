import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The section a benchmark writes into docs/benchmarks.md, between its own markers:
 * `<!-- bench:NAME:start (written by bench/NAME/main.ts) -->` ... `<!-- bench:NAME:end -->`.
 */
export function benchSection(name: string, command: string, machine: string, summary: string, at = new Date()): string {
  return [
    `<!-- bench:${name}:start (written by bench/${name}/main.ts) -->`,
    `Measured ${at.toISOString().slice(0, 16).replace('T', ' ')} UTC with \`${command}\` on:`,
    '',
    machine,
    '',
    summary,
    `<!-- bench:${name}:end -->`,
  ].join('\n');
}

/** `doc` with NAME's section replaced by `section`, or with `section` appended when there is none yet. Pure. */
export function upsertBenchSection(doc: string, name: string, section: string): string {
  const re = new RegExp(`<!-- bench:${name}:start[\\s\\S]*?<!-- bench:${name}:end -->`);
  return re.test(doc) ? doc.replace(re, () => section) : `${doc.trimEnd()}\n\n${section}\n`;
}

/** Writes NAME's section into `<repo>/docs/benchmarks.md`; returns the file's path. */
export function writeBenchSection(repoRoot: string, name: string, command: string, machine: string, summary: string): string {
  const file = path.join(repoRoot, 'docs/benchmarks.md');
  writeFileSync(file, upsertBenchSection(readFileSync(file, 'utf8'), name, benchSection(name, command, machine, summary)));
  return file;
}
