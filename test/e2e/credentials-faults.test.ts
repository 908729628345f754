import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseEnvFile } from '../../shared/credentials/index.js';
import { Cluster, REDIS_NODES } from '../helpers/cluster.js';
import { credentialsDirOf, redisPasswordOn, sourceWithShell, storeValues } from '../helpers/credentials.js';
import { waitFor } from '../helpers/proc.js';

// Faults around the agent's credentials writer, on the real engine with one Redis node whose
// credentials directory is a small tmpfs (64 KiB): disk full, kill -9 between the temporary
// file and the rename, and a symlink planted at a credentials file.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '30s'];
const NODE = 'redis-01';
let cluster: Cluster;
let credDir: string;
let mounted = false;

beforeAll(async () => {
  cluster = new Cluster({ nodes: [REDIS_NODES[0]!] });
  credDir = credentialsDirOf(cluster, NODE);
  mkdirSync(credDir, { recursive: true, mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', credDir]);
  mounted = true;
  await cluster.start();
  const r = await cluster.kbctl(['rollout', 'redis', ...GATE]);
  if (r.code !== 0) throw new Error(`initial rollout failed: ${r.stdout}\n${r.stderr}\n${cluster.dumpLogs()}`);
});

afterAll(async () => {
  await cluster?.stop();
  if (mounted) execFileSync('umount', [credDir]);
});

const file = (name: string) => path.join(credDir, name);
const temps = () => readdirSync(credDir).filter((f) => f.includes('.kb-tmp-'));

/** The rotation record, from `kbctl secrets list -o json`. */
async function rotation(): Promise<{ state: string; phase: string; error: string } | undefined> {
  const r = await cluster.kbctl(['-o', 'json', 'secrets', 'list']);
  return (JSON.parse(r.stdout) as { rotations: { name: string; state: string; phase: string; error: string }[] }).rotations.find((x) => x.name === 'redis');
}

describe('credentials writer faults on the real engine', () => {
  it('disk full: the apply fails with a clear error naming the file, the old files are intact, no temporary file is left', async () => {
    const names = ['redis.env', 'redis-server.conf', 'redis-sentinel.conf'];
    const before = names.map((n) => readFileSync(file(n)));
    // Fill the tmpfs.
    const filler = file('filler');
    try {
      writeFileSync(filler, Buffer.alloc(128 * 1024));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    try {
      const r = await cluster.kbctl(['secrets', 'rotate', 'redis', ...GATE]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('rotation of redis FAILED in phase accept');
      expect(r.stderr).toMatch(/step credentials, file (redis-sentinel|redis-server)\.conf: write .*\.conf: disk full \(ENOSPC\) in .*credentials; the previous file is intact/);
      names.forEach((n, i) => expect(readFileSync(file(n)).equals(before[i]!), n).toBe(true));
      expect(temps()).toEqual([]);
      // Redis still runs with its password (nothing after the failed step was touched).
      const c = (await cluster.container(NODE, 'redis'))!;
      expect(c.State.Running).toBe(true);
      expect(await rotation()).toMatchObject({ state: 'failed', phase: 'accept' });
    } finally {
      unlinkSync(filler);
    }
  });

  it('kill -9 between the temporary file and the rename leaves the complete old file; after a restart the complete new one', async () => {
    // Restart the agent with a test-only pause right before redis.env's rename.
    await cluster.agents.get(NODE)!.kill('SIGKILL');
    const paused = await cluster.startAgent(NODE, { KB_TEST_PAUSE: 'credentials-before-rename/redis.env:60000' });
    await cluster.waitReady([NODE]);
    const oldEnv = readFileSync(file('redis.env'));
    const v1 = storeValues(cluster).get('redis@1')!;
    expect(Object.fromEntries(parseEnvFile(oldEnv.toString(), 'redis.env').vars)).toEqual(v1);
    // Resume the rotation: accept (template) passes, switch writes redis.env and pauses.
    const resume = await cluster.kbctl(['secrets', 'rotate', 'redis', '--detach', ...GATE]);
    expect(resume.code).toBe(0);
    await waitFor('agent paused before the rename of redis.env', () => paused.log().includes('test pause point credentials-before-rename/redis.env reached'), 60_000, 20);
    expect(readFileSync(file('redis.env')).equals(oldEnv)).toBe(true);
    await paused.kill('SIGKILL');
    // Right after the crash: the target is the complete old file; the new content sits, complete, in the temporary file.
    expect(readFileSync(file('redis.env')).equals(oldEnv)).toBe(true);
    const v2 = storeValues(cluster).get('redis@2')!;
    const tmp = temps();
    expect(tmp).toHaveLength(1);
    expect(Object.fromEntries(parseEnvFile(readFileSync(file(tmp[0]!), 'utf8'), 'tmp').vars)).toEqual(v2);
    expect((statSync(file(tmp[0]!)).mode & 0o777).toString(8)).toBe('600');

    await cluster.startAgent(NODE);
    await waitFor('rotation done', async () => (await rotation())?.state === 'succeeded', 90_000, 250);
    expect(await sourceWithShell(file('redis.env'), Object.keys(v2))).toEqual(v2);
    expect(temps()).toEqual([]);
    const st = statSync(file('redis.env'));
    expect([(st.mode & 0o777).toString(8), st.uid, st.gid]).toEqual(['600', 0, 0]);
    expect(await redisPasswordOn(cluster, NODE)).toBe(v2.REDIS_PASSWORD);
  });

  it('a symlink planted at redis.env is refused and reported; its target is untouched; removing it restores the file', async () => {
    const victim = path.join(cluster.dir, 'victim.txt');
    writeFileSync(victim, 'not a credentials file\n', { mode: 0o644 });
    rmSync(file('redis.env'));
    symlinkSync(victim, file('redis.env'));
    // The agent notices on its own (periodic reconcile and health report) and refuses.
    await waitFor('refusal reported in kbctl nodes', async () => {
      const nodes = JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string; modules: { summary: string }[] }[];
      return nodes.find((n) => n.name === NODE)?.modules[0]?.summary.includes('credentials redis.env: refused: a symlink is at the target path');
    }, 30_000, 250);
    // A rollout that must write there fails with the refusal.
    const r = await cluster.kbctl(['secrets', 'rotate', 'redis', ...GATE]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/step credentials, file redis\.env: refused: .*redis\.env is a symlink; nothing was written and its target is left untouched/);
    expect(readFileSync(victim, 'utf8')).toBe('not a credentials file\n');
    expect((statSync(victim).mode & 0o777).toString(8)).toBe('644');
    expect(lstatSync(file('redis.env')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(cluster.dir, `agent-${NODE}.log`), 'utf8')).toContain('is a symlink');

    // Remove the symlink: the agent asks the coordinator for the values again and rewrites the file.
    unlinkSync(file('redis.env'));
    await waitFor('redis.env restored', () => {
      try {
        return lstatSync(file('redis.env')).isFile();
      } catch {
        return false;
      }
    }, 30_000, 200);
    expect(readFileSync(path.join(cluster.dir, `agent-${NODE}.log`), 'utf8')).toContain('asked the coordinator to resend credentials');
    const done = await cluster.kbctl(['secrets', 'rotate', 'redis', ...GATE]);
    if (done.code !== 0) console.log(done.stdout, done.stderr, cluster.dumpLogs());
    expect(done.code).toBe(0);
    const v3 = storeValues(cluster).get('redis@3')!;
    expect(await sourceWithShell(file('redis.env'), Object.keys(v3))).toEqual(v3);
    expect(readFileSync(victim, 'utf8')).toBe('not a credentials file\n');
  });
});
