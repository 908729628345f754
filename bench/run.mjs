#!/usr/bin/env node
// kb benchmarks (docs/benchmarks.md).
//
//   npm run bench                              every benchmark, one after the other
//   npm run bench -- redis-failover [args...]  one benchmark, with its own arguments
//   node bench/run.mjs --list                  what exists
//
// Each benchmark is bench/<name>/main.ts. This runner builds kb (dist/, as the tests use it),
// makes sure the test bed is up, bundles the benchmark with esbuild (dependencies stay in
// node_modules) and runs it with node. A benchmark is never part of the test suite's
// pass/fail; the suite may run a smoke version of one.
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const all = readdirSync(path.join(root, 'bench'), { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(path.join(root, 'bench', d.name, 'main.ts')))
  .map((d) => d.name)
  .sort();

const argv = process.argv.slice(2);
if (argv[0] === '--list') {
  process.stdout.write(`${all.join('\n')}\n`);
  process.exit(0);
}
const noBuild = argv[0] === '--no-build';
if (noBuild) argv.shift();
const only = argv[0] && !argv[0].startsWith('-') ? argv.shift() : undefined;
if (only && !all.includes(only)) {
  process.stderr.write(`bench: unknown benchmark "${only}" (known: ${all.join(', ')})\n`);
  process.exit(2);
}

if (!noBuild) {
  execFileSync(process.execPath, [path.join(root, 'scripts/build.mjs')], { stdio: 'inherit' });
  execFileSync('bash', [path.join(root, 'scripts/testbed.sh'), 'up'], { stdio: 'inherit' });
}

let failed = 0;
for (const name of only ? [only] : all) {
  const out = path.join(root, 'dist', 'bench', `${name}.mjs`);
  await build({
    entryPoints: [path.join(root, 'bench', name, 'main.ts')],
    outfile: out,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    logLevel: 'warning',
  });
  process.stdout.write(`\n== bench ${name}\n`);
  const r = spawnSync(process.execPath, [out, ...(only ? argv : [])], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
