import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dist, inventoryText, REDIS_NODES, repoRoot } from '../helpers/cluster.js';
import { Proc, waitFor } from '../helpers/proc.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

// Bad input gets a clear error naming the file, line, field or node, and nothing is applied.

let cluster: Cluster;
let versions: string;
let goodInventory: string;

beforeAll(async () => {
  cluster = new Cluster();
  versions = cluster.versionsFile;
  goodInventory = readFileSync(cluster.inventoryFile, 'utf8');
  await cluster.start();
});

afterAll(async () => {
  await cluster?.stop();
});

async function nothingApplied(): Promise<void> {
  for (const n of REDIS_NODES) expect(await cluster.containers(n.name)).toEqual([]);
  const status = await cluster.kbctl(['rollout', 'status', 'redis']);
  expect(status.stdout).toContain('no rollout of redis yet');
}

describe('bad input is refused with a clear error and nothing is applied', () => {
  it('malformed servers.tsv: the coordinator refuses to start and names file:line', async () => {
    const bad = path.join(cluster.dir, 'bad-servers.tsv');
    writeFileSync(bad, `${goodInventory}prod\t-\tredis-04\t10.0.0.300\n`);
    const p = new Proc('bad-coordinator', process.execPath, [dist('kb-coordinator.cjs'), 'run', '--inventory', bad, '--versions', versions, '--data-dir', path.join(cluster.dir, 'bad'), '--listen', '127.0.0.1:0', '--plaintext'], path.join(cluster.dir, 'bad-coordinator.log'));
    expect(await p.exited).toBe(1);
    expect(p.log()).toContain(`${bad}:5: expected 12 columns, found 4`);
  });

  it('a module that cannot be planned from its settings is named with the file when the coordinator starts', async () => {
    const settings = path.join(cluster.dir, 'bad-modules.yaml');
    writeFileSync(settings, 'redis:\n  port: seventy\n');
    const p = new Proc('unplannable-coordinator', process.execPath, [dist('kb-coordinator.cjs'), 'run', '--inventory', cluster.inventoryFile, '--versions', versions, '--settings', settings, '--data-dir', path.join(cluster.dir, 'unplannable'), '--listen', '127.0.0.1:0', '--plaintext'], path.join(cluster.dir, 'unplannable-coordinator.log'));
    try {
      const line = await waitFor('the start-up plan in the log', () => p.log().split('\n').find((l) => l.includes('inputs planned at start')), 20_000);
      expect(line).toContain('inputs planned at start: none');
      expect(p.log()).toContain('module redis cannot be planned from the current inputs; a rollout of it will be refused until they are fixed');
      expect(p.log()).toContain(settings);
    } finally {
      await p.kill();
    }
  });

  it('malformed servers.tsv edited under a running coordinator: plan and rollout refuse, naming file:line', async () => {
    writeFileSync(cluster.inventoryFile, goodInventory.replace(REDIS_NODES[2]!.ip, '127.0.1.999'));
    try {
      for (const args of [['plan', 'redis'], ['rollout', 'redis']]) {
        const r = await cluster.kbctl(args);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`${cluster.inventoryFile}:4:4: IP_PRIVEE: invalid IPv4 address "127.0.1.999"`);
      }
      await nothingApplied();
    } finally {
      writeFileSync(cluster.inventoryFile, goodInventory);
    }
  });

  it("'latest' in versions.yaml: rollout refused with file:line", async () => {
    writeFileSync(versions, 'redis_image: "127.0.0.1:5000/kb/redis:latest"  # not pinned\n');
    try {
      const r = await cluster.kbctl(['rollout', 'redis']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${versions}:1: redis_image: 'latest' is not a pinned version`);
      await nothingApplied();
    } finally {
      cluster.useVersions('original');
    }
  });

  it('unknown module and a node not in the inventory: refused, naming them', async () => {
    const r1 = await cluster.kbctl(['rollout', 'nosuch']);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toContain('unknown module "nosuch" (known modules: redis, haproxy)');
    const r2 = await cluster.kbctl(['plan', 'redis', '--node', 'redis-09']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('node "redis-09" is not in the inventory');
    await nothingApplied();
  });

  it('an agent whose node is not in the inventory is refused and gets no plan', async () => {
    const intruder = await cluster.startAgent('redis-09');
    await waitFor('refusal logged', () => intruder.log().includes('node \\"redis-09\\" is not in the inventory') || intruder.log().includes('node "redis-09" is not in the inventory'), 15_000);
    const nodes = JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string }[];
    expect(nodes.map((n) => n.name)).not.toContain('redis-09');
    await intruder.kill('SIGKILL');
  });

  it('kbctl validate prints FILE:LINE: message per problem and exits 1; 0 when clean', async () => {
    const run = (args: string[]) => new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [dist('kbctl.cjs'), 'validate', ...args], (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout }));
    });
    const bad = await run(['--inventory', path.join(repoRoot, 'test/fixtures/servers-bad.tsv'), '--versions', path.join(repoRoot, 'test/fixtures/versions-bad.yaml')]);
    expect(bad.code).toBe(1);
    const lines = bad.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const l of lines) expect(l).toMatch(/^\S+:\d+(:\d+)?: /);
    expect(bad.stdout).toContain("'latest' is not a pinned version");
    expect(bad.stdout).toContain('more than one Redis master');
    expect(bad.stdout).toContain('k8s-worker-05 must never host MinIO');
    expect(bad.stdout).toContain('duplicate hostname');
    const good = await run(['--inventory', sharedFixture('servers.tsv'), '--versions', path.join(repoRoot, 'test/fixtures/versions.yaml')]);
    expect(good.code).toBe(0);
    writeFileSync(path.join(cluster.dir, 'inv.tsv'), inventoryText(REDIS_NODES));
  });
});
