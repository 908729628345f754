#!/usr/bin/env node
// Builds kb: proto descriptor check, esbuild bundles, and (with --sea or by default) the
// single-executable agent at dist/kb-agent. Usage: node scripts/build.mjs [--no-sea]
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, writeFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
mkdirSync(dist, { recursive: true });
execFileSync(process.execPath, [path.join(root, 'scripts/gen-proto.mjs'), '--check'], { stdio: 'inherit' });

// dockerode's SSH transport (ssh2 + cpu-features, native) is never used by kb: replace it
// with a stub that fails loudly if it ever is.
const stubSsh = {
  name: 'stub-ssh2',
  setup(b) {
    b.onResolve({ filter: /^(ssh2|cpu-features)$/ }, (args) => ({ path: args.path, namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, (args) => ({
      contents: `class Unsupported { constructor() { throw new Error('${args.path} is not bundled in kb (SSH transport unsupported)'); } }\nmodule.exports = { Client: Unsupported };`,
      loader: 'js',
    }));
  },
};

// `import text from './file.sh?raw'` (as vite/vitest do): the file's text as a string.
const raw = {
  name: 'raw',
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, (args) => ({ path: path.resolve(args.resolveDir, args.path.replace(/\?raw$/, '')), namespace: 'raw' }));
    b.onLoad({ filter: /.*/, namespace: 'raw' }, async (args) => ({ contents: (await import('node:fs')).readFileSync(args.path, 'utf8'), loader: 'text' }));
  },
};

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: false,
  logLevel: 'warning',
  legalComments: 'none',
  plugins: [stubSsh, raw],
};

const t0 = Date.now();
await Promise.all([
  // The agent's bundle is the single executable's script: V8 keeps its source in memory for
  // lazy compilation, so it is minified (whitespace and syntax; names kept for logs and stack
  // traces). See docs/benchmarks.md, agent footprint.
  build({ ...common, entryPoints: [path.join(root, 'agent/main.ts')], outfile: path.join(dist, 'kb-agent.cjs'), minifyWhitespace: true, minifySyntax: true }),
  build({ ...common, entryPoints: [path.join(root, 'coordinator/main.ts')], outfile: path.join(dist, 'kb-coordinator.cjs'), external: ['better-sqlite3', 'etcd3', 'cockatiel'] }),
  build({ ...common, entryPoints: [path.join(root, 'coordinator/kbctl/bin.ts')], outfile: path.join(dist, 'kbctl.cjs') }),
]);
for (const [name, file] of [['kb-coordinator', 'kb-coordinator.cjs'], ['kbctl', 'kbctl.cjs']]) {
  writeFileSync(path.join(dist, name), `#!/bin/sh\nexec node "$(dirname "$(readlink -f "$0")")/${file}" "$@"\n`, { mode: 0o755 });
}
process.stdout.write(`bundles built in ${Date.now() - t0} ms\n`);

if (!process.argv.includes('--no-sea')) {
  const t1 = Date.now();
  const seaConfig = path.join(dist, 'sea-config.json');
  const blob = path.join(dist, 'kb-agent.blob');
  writeFileSync(seaConfig, JSON.stringify({ main: path.join(dist, 'kb-agent.cjs'), output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }));
  execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
  const bin = path.join(dist, 'kb-agent');
  rmSync(bin, { force: true });
  copyFileSync(process.execPath, bin);
  chmodSync(bin, 0o755);
  execFileSync(process.execPath, [path.join(root, 'node_modules/postject/dist/cli.js'), bin, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: 'ignore' });
  rmSync(blob, { force: true });
  rmSync(seaConfig, { force: true });
  process.stdout.write(`single-executable agent dist/kb-agent (${Math.round(statSync(bin).size / 1e6)} MB) built in ${Date.now() - t1} ms\n`);
}
