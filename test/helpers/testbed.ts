// Access to the local test bed made by `bash scripts/testbed.sh up` (Docker engine, registry,
// locally built images, pinned versions files). Uses node: builtins only.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Testbed {
  /** State directory ($KB_TESTBED_DIR, default <repo>/.testbed). */
  dir: string;
  /** Docker endpoint, e.g. unix:///…/.testbed/docker.sock. */
  dockerHost: string;
  /** Registry host:port, e.g. 127.0.0.1:5000. */
  registry: string;
  /** Pinned versions file (redis kb1, haproxy kb1). */
  versionsFile: string;
  /** Same as versionsFile but with redis_image bumped to kb2. */
  versionsBumpFile: string;
  images: { redis1: string; redis2: string; haproxy: string; busybox: string };
}

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HINT = 'run `bash scripts/testbed.sh up` first';

/** Parses `export KEY=VALUE` / `KEY=VALUE` lines (values optionally single/double quoted). */
function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    const key = m[1] as string;
    let value = (m[2] as string).trim();
    if (
      value.length >= 2 &&
      ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'")))
    ) {
      value = value.slice(1, -1);
    }
    out[key] = value;
  }
  return out;
}

export function loadTestbed(): Testbed {
  const fromEnv = process.env['KB_TESTBED_DIR'];
  const dir = resolve(fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(REPO_ROOT, '.testbed'));
  const envFile = join(dir, 'env');
  if (!existsSync(envFile)) {
    throw new Error(`kb test bed not found: ${envFile} does not exist; ${HINT}`);
  }
  const vars = parseEnvFile(readFileSync(envFile, 'utf8'));
  const dockerHost = vars['DOCKER_HOST'];
  const registry = vars['KB_REGISTRY'];
  if (dockerHost === undefined || dockerHost === '' || registry === undefined || registry === '') {
    throw new Error(`kb test bed env file ${envFile} lacks DOCKER_HOST or KB_REGISTRY; ${HINT}`);
  }
  const versionsFile = join(dir, 'versions.yaml');
  const versionsBumpFile = join(dir, 'versions-bump.yaml');
  for (const f of [versionsFile, versionsBumpFile]) {
    if (!existsSync(f)) throw new Error(`kb test bed file ${f} is missing; ${HINT}`);
  }
  return {
    dir,
    dockerHost,
    registry,
    versionsFile,
    versionsBumpFile,
    images: {
      redis1: `${registry}/kb/redis:7.0-kb1`,
      redis2: `${registry}/kb/redis:7.0-kb2`,
      haproxy: `${registry}/kb/haproxy:2.6-kb1`,
      busybox: `${registry}/kb/busybox:1-kb1`,
    },
  };
}
