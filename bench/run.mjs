#!/usr/bin/env node
// Runs kb's benchmarks: every bench/<name>.bench.ts, or only those named on the command line.
//
//   node bench/run.mjs                       # all benchmarks, one after the other
//   node bench/run.mjs coordinator-failover  # one benchmark
//
// Each benchmark is a TypeScript program: it is bundled with esbuild (packages stay in
// node_modules) into bench/.out/ and run with node; its stdout (the results, as markdown)
// is printed, its progress goes to stderr. Benchmarks measure the real thing, so they
// need `node scripts/build.mjs` and `bash scripts/testbed.sh up` first, and
// KB_E2E_SUBNET set to your loopback /24 (see docs/benchmarks.md).
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const all = readdirSync(dir).filter((f) => f.endsWith('.bench.ts')).map((f) => f.replace(/\.bench\.ts$/, '')).sort();
const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  process.stderr.write(`bench: unknown benchmark ${unknown.join(', ')} (known: ${all.join(', ')})\n`);
  process.exit(2);
}
const out = path.join(dir, '.out');
mkdirSync(out, { recursive: true });
let failed = 0;
for (const name of wanted.length ? wanted : all) {
  const outfile = path.join(out, `${name}.mjs`);
  await build({
    entryPoints: [path.join(dir, `${name}.bench.ts`)], outfile, bundle: true, platform: 'node', target: 'node20', format: 'esm',
    packages: 'external', logLevel: 'warning',
  });
  process.stdout.write(`\n## ${name}\n\n`);
  const r = spawnSync(process.execPath, [outfile], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    process.stderr.write(`bench: ${name} exited with ${r.status ?? r.signal}\n`);
  }
}
process.exit(failed ? 1 : 0);
