import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, REDIS_NODES, run, SUBNET } from '../helpers/cluster.js';

// A fresh "host" with nothing of kb on it: a network namespace of its own (veth pair,
// link-local 169.254.X.0/24, X = the third octet of KB_E2E_SUBNET) and its own hostname
// (a UTS namespace). The coordinator listens on the host side of the veth; inside the
// namespace, the line `kbctl token create` prints is pasted as is. The agent reaches the
// test bed's Docker engine through its unix socket (same filesystem).

const X = SUBNET.split('.')[2]!;
const NS = `kb${X}-host`;
const HOST_IF = `kb${X}h0`;
const NS_IF = `kb${X}n0`;
const HOST_IP = `169.254.${X}.1`;
const NS_IP = `169.254.${X}.2`;
const EDGE = { name: 'edge-01', ip: `${SUBNET}.30`, role: 'k3s', subrole: 'worker' };
let cluster: Cluster;
let root: string;

async function sh(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

async function removeNamespace(): Promise<void> {
  await run('ip', ['netns', 'del', NS]);
  await run('ip', ['link', 'del', HOST_IF]);
}

beforeAll(async () => {
  await removeNamespace(); // leftovers of an interrupted run
  await sh('ip', ['netns', 'add', NS]);
  await sh('ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF]);
  await sh('ip', ['link', 'set', NS_IF, 'netns', NS]);
  await sh('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', HOST_IF]);
  await sh('ip', ['link', 'set', HOST_IF, 'up']);
  await sh('ip', ['netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/24`, 'dev', NS_IF]);
  await sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', NS_IF, 'up']);
  await sh('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
  cluster = new Cluster({ nodes: [...REDIS_NODES, EDGE], listenHost: HOST_IP });
  await cluster.startCoordinator();
  root = mkdtempSync(path.join(cluster.dir, 'edge-01-root-'));
  mkdirSync(path.join(cluster.dir, 'tmp'));
});

afterAll(async () => {
  const pidFile = path.join(root ?? '/nonexistent', 'run/kb-agent.pid');
  if (existsSync(pidFile)) {
    try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* already gone */ }
  }
  await cluster?.stop();
  await removeNamespace();
});

describe('a fresh host in its own network namespace', () => {
  it('runs the printed install command and ends Ready in `kbctl nodes`', async () => {
    // Nothing of kb on the host, and the namespace sees only its veth: not the test bed's loopback.
    expect(readdirSync(root)).toEqual([]);
    const probe = await run('ip', ['netns', 'exec', NS, 'ip', '-4', '-o', 'addr']);
    expect(probe.stdout).toContain(NS_IP);
    expect(probe.stdout).not.toContain(SUBNET);

    const tok = await cluster.createToken(['--node', 'edge-01']);
    expect(tok.installCommand).toContain(`https://${HOST_IP}:${cluster.bootstrapPort}/install.sh`);
    const t0 = Date.now();
    const r = await run('ip', ['netns', 'exec', NS, 'unshare', '--uts', 'sh', '-c', `hostname edge-01 && ${tok.installCommand}`], {
      PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: path.join(cluster.dir, 'tmp'),
      KB_NO_SYSTEMD: '1', KB_INSTALL_ROOT: root, KB_SHARED_ENGINE: '1', DOCKER_HOST: cluster.tb.dockerHost,
    });
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    const installedMs = Date.now() - t0;
    await cluster.waitReady(['edge-01']);
    const readyMs = Date.now() - t0;
    console.log(`fresh host (netns ${NS}): install command ${installedMs} ms, Ready in kbctl nodes after ${readyMs} ms`);

    const nodes = JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string; status: string; agentVersion: string; certSerial: string }[];
    const edge = nodes.find((n) => n.name === 'edge-01')!;
    expect(edge.status).toBe('Ready');
    expect(edge.certSerial).toMatch(/^[0-9a-f]+$/);
    // The node name came from the host's own hostname, and everything came over the veth.
    expect(readFileSync(path.join(root, 'etc/kb-agent/kb-agent.env'), 'utf8')).toContain('KB_NODE=edge-01');
    const log = cluster.coordinator!.log().split('\n');
    expect(log.find((l) => l.includes('"msg":"node enrolled"') && l.includes('"node":"edge-01"'))).toContain(`"source":"${NS_IP}"`);
    expect(log.find((l) => l.includes('"msg":"agent connected"') && l.includes('"node":"edge-01"'))).toContain(`"peer":"${NS_IP}:`);
  });
});
