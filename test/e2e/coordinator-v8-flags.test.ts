import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cluster, REDIS_NODES, SUBNET, repoRoot } from '../helpers/cluster.js';
import { waitFor } from '../helpers/proc.js';

// The coordinator's V8 flags (coordinator/v8-flags.ts, ADR 0018). V8 itself ignores a flag it
// does not know, silently: these check that the default is one this Node knows, and that a
// wrong KB_COORDINATOR_V8_FLAGS stops `run` with a message naming the variable. The last one
// checks that the built coordinator relaxes the heap growth those flags set while a wide
// batch is sent, and sets it back after (ADR 0022).

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

  it('a batch wider than 100 nodes is sent with heap growth relaxed; the value at rest is back for the collection after it', async () => {
    // 120 HAProxy nodes that never connect (no agent runs): every node's gate runs out at the
    // 2 s deadline, which ends the batch. Nothing listens on their addresses.
    const lbs = Array.from({ length: 120 }, (_, i) => ({ name: `lb-${i + 1}`, ip: `${SUBNET}.${101 + i}`, role: 'lb', subrole: 'internal-haproxy' }));
    const cluster = new Cluster({ nodes: [...REDIS_NODES, ...lbs], settings: 'haproxy:\n  bind: private\n', plaintext: true });
    try {
      const coord = await cluster.startCoordinator();
      const r = await cluster.kbctl(['rollout', 'haproxy', '--max-parallel', '120', '--healthy-deadline', '2s', '--min-healthy-time', '0s', '--detach']);
      expect(r.code, r.stderr).toBe(0);
      await waitFor('the collection after the batch', () => coord.log().includes('memory collected after a batch of 120 nodes'), 60_000);
      const lines = coord.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string; nodes?: number; heapGrowingPercent?: number });
      expect(coord.log()).toMatch(/kb-coordinator listening .*, V8 --heap-growing-percent=20\)/);
      const sent = lines.find((l) => l.msg === 'state sent to every node of the batch')!;
      expect(sent.nodes).toBe(120);
      expect(sent.heapGrowingPercent).toBe(0);
      const collected = lines.find((l) => l.msg.startsWith('memory collected after a batch of 120 nodes'))!;
      expect(collected.heapGrowingPercent).toBe(20);
    } finally {
      await cluster.stop();
    }
  });
});
