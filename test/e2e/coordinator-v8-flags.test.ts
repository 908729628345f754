import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { COORDINATOR_NODE_FLAGS, nodeFlagsGiven, nodeFlagsMissing } from '../../coordinator/node-flags.js';
import { Cluster, REDIS_NODES, repoRoot } from '../helpers/cluster.js';
import { Proc } from '../helpers/proc.js';

// The coordinator's V8 flags (coordinator/v8-flags.ts, ADR 0018; coordinator/node-flags.ts,
// ADR 0022). V8 itself ignores a flag it does not know, silently: these check that the
// defaults are ones this Node knows, that a wrong KB_COORDINATOR_V8_FLAGS stops `run` with a
// message naming the variable, and that the launcher passes the start-up flags.

const coordinator = path.join(repoRoot, 'dist/kb-coordinator.cjs');

describe('coordinator V8 flags', () => {
  it('the default flags are known to this Node', async () => {
    process.env.KB_COORDINATOR_V8_FLAGS = ''; // import without applying them to the test process
    const { DEFAULT_COORDINATOR_V8_FLAGS } = await import('../../coordinator/v8-flags.js');
    delete process.env.KB_COORDINATOR_V8_FLAGS;
    expect(DEFAULT_COORDINATOR_V8_FLAGS).not.toBe('');
    const r = spawnSync(process.execPath, [...DEFAULT_COORDINATOR_V8_FLAGS.split(' '), '-e', ''], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('an unknown flag in KB_COORDINATOR_V8_FLAGS stops `run` before it reads anything, naming the variable', () => {
    const r = spawnSync(process.execPath, [coordinator, 'run', '--inventory', '/nonexistent/servers.tsv', '--versions', '/nonexistent/versions.yaml'], {
      encoding: 'utf8', env: { ...process.env, KB_COORDINATOR_V8_FLAGS: '--heap-growing-percent=20 --no-such-v8-flag' },
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('KB_COORDINATOR_V8_FLAGS="--heap-growing-percent=20 --no-such-v8-flag": not accepted by this Node\'s V8');
    expect(r.stderr).toContain('--no-such-v8-flag');
    expect(r.stderr).not.toContain('/nonexistent');
  });

  it('the start-up flags are known to this Node, and the launcher dist/kb-coordinator passes them', () => {
    const r = spawnSync(process.execPath, [...COORDINATOR_NODE_FLAGS, '-e', ''], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const launcher = readFileSync(path.join(repoRoot, 'dist/kb-coordinator'), 'utf8');
    expect(launcher).toContain(`exec node ${COORDINATOR_NODE_FLAGS.join(' ')} "`);
    expect(nodeFlagsMissing(['--min-semi-space-size=32'])).toEqual([]);
    expect(nodeFlagsGiven(['--cpu-prof', '--min-semi-space-size=32'])).toEqual(['--min-semi-space-size=32']);
    expect(nodeFlagsMissing(['--cpu-prof'])).toEqual([...COORDINATOR_NODE_FLAGS]);
  });

  it('started by the launcher, the listening line names every V8 flag in effect; started by node alone, the log says what is missing', async () => {
    const cluster = new Cluster({ nodes: [REDIS_NODES[0]!], plaintext: true });
    try {
      const p = await cluster.startCoordinator();
      expect(p.log()).toContain(`V8 ${COORDINATOR_NODE_FLAGS.join(' ')} --heap-growing-percent=20)`);
      expect(p.log()).not.toContain('node was started without');
      await cluster.stop();
      const bare = new Proc('coordinator', process.execPath, [path.join(repoRoot, 'dist/kb-coordinator.cjs'), 'run', '--plaintext',
        '--inventory', cluster.inventoryFile, '--versions', cluster.versionsFile, '--settings', cluster.settingsFile,
        '--data-dir', cluster.dataDir, '--listen', cluster.address], path.join(cluster.dir, 'bare.log'));
      try {
        await waitListening(bare);
        expect(bare.log()).toContain('V8 --heap-growing-percent=20)');
        expect(bare.log()).toContain(`node was started without ${COORDINATOR_NODE_FLAGS.join(' ')}`);
      } finally {
        await bare.kill('SIGKILL');
      }
    } finally {
      await cluster.stop();
      rmSync(cluster.dir, { recursive: true, force: true });
    }
  });
});

async function waitListening(p: Proc): Promise<void> {
  for (const until = Date.now() + 20_000; Date.now() < until;) {
    if (p.log().includes('kb-coordinator listening')) return;
    if (!p.running) throw new Error(p.log());
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no listening line within 20 s:\n${p.log()}`);
}
