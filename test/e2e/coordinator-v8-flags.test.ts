import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/cluster.js';

// The coordinator's V8 flags (coordinator/v8-flags.ts, ADR 0018). V8 itself ignores a flag it
// does not know, silently: these check that the default is one this Node knows, and that a
// wrong KB_COORDINATOR_V8_FLAGS stops `run` with a message naming the variable.

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
});
