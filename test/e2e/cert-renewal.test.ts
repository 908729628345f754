import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certInfo } from '../../shared/tls/index.js';
import { Cluster, REDIS_NODES } from '../helpers/cluster.js';
import { sleep, waitFor } from '../helpers/proc.js';

// Node certificates renew on their own before they expire, over the mTLS channel, without
// losing the session. Lifetimes are 12 s here (production: 30 days, renewed after 20).

const TTL_MS = 12_000;
let cluster: Cluster;

beforeAll(async () => {
  cluster = new Cluster({ nodes: [REDIS_NODES[0]!], coordinatorArgs: ['--node-cert-ttl', `${TTL_MS / 1000}s`] });
  await cluster.start();
});

afterAll(async () => {
  await cluster?.stop();
});

const count = (text: string, needle: string) => text.split('\n').filter((l) => l.includes(needle)).length;

describe('certificate renewal', () => {
  it('renews before expiry with a new key, twice, while the one session stays open and the node stays Ready', async () => {
    const tls = cluster.tlsDir('redis-01');
    const first = certInfo(readFileSync(path.join(tls, 'node.crt')));
    const firstKey = readFileSync(path.join(tls, 'node.key'), 'utf8');
    expect(first.notAfterMs - Date.now()).toBeLessThanOrEqual(TTL_MS);
    const seen = new Set<string>([first.serial]);
    const statuses = new Set<string>();
    // Watch until two renewals happened and the first certificate is well past its expiry.
    const end = Date.now() + 4 * TTL_MS;
    while (Date.now() < end && !(seen.size >= 3 && Date.now() > first.notAfterMs + 2000)) {
      const r = await cluster.kbctl(['-o', 'json', 'nodes']);
      const n = (JSON.parse(r.stdout) as { name: string; status: string; certSerial: string }[]).find((x) => x.name === 'redis-01')!;
      statuses.add(n.status);
      seen.add(n.certSerial);
      await sleep(250);
    }
    console.log(`certificates seen: ${seen.size} (first expired ${Date.now() - first.notAfterMs} ms ago)`);
    expect(seen.size).toBeGreaterThanOrEqual(3);
    expect(Date.now()).toBeGreaterThan(first.notAfterMs);
    expect([...statuses]).toEqual(['Ready']);

    const agentLog = cluster.agents.get('redis-01')!.log();
    const coordLog = cluster.coordinator!.log();
    expect(count(agentLog, '"msg":"certificate renewed"')).toBeGreaterThanOrEqual(2);
    expect(count(agentLog, '"msg":"session open"')).toBe(1);
    expect(count(coordLog, '"msg":"agent connected"')).toBe(1);
    expect(coordLog).not.toContain('its certificate expired');

    const now = certInfo(readFileSync(path.join(tls, 'node.crt')));
    expect(now.serial).not.toBe(first.serial);
    expect(now.commonName).toBe('redis-01');
    expect(now.notAfterMs).toBeGreaterThan(Date.now());
    expect(readFileSync(path.join(tls, 'node.key'), 'utf8')).not.toBe(firstKey);
    expect((statSync(path.join(tls, 'node.key')).mode & 0o777).toString(8)).toBe('600');
    // The control plane still works end to end over the renewed identity.
    const plan = await cluster.kbctl(['plan', 'redis']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('redis-01: create');
  });

  it('a restarted agent reconnects with its renewed certificate', async () => {
    await cluster.agents.get('redis-01')!.kill('SIGKILL');
    await cluster.startAgent('redis-01');
    await cluster.waitReady(['redis-01']);
    const serial = certInfo(readFileSync(path.join(cluster.tlsDir('redis-01'), 'node.crt'))).serial;
    expect((await cluster.certSerials())['redis-01']).toBe(serial);
  });

  it('a certificate that was not renewed ends its session at expiry, and cannot open a new one', async () => {
    const agent = cluster.agents.get('redis-01')!;
    const cert = certInfo(readFileSync(path.join(cluster.tlsDir('redis-01'), 'node.crt')));
    agent.child.kill('SIGSTOP'); // a frozen agent cannot renew
    try {
      await waitFor('session closed at certificate expiry', () => cluster.coordinator!.log().includes('its certificate expired'), 2 * TTL_MS, 200);
      expect(Date.now()).toBeGreaterThanOrEqual(cert.notAfterMs);
      const line = cluster.coordinator!.log().split('\n').find((l) => l.includes('its certificate expired'))!;
      expect((JSON.parse(line) as { time: number }).time).toBeGreaterThanOrEqual(cert.notAfterMs);
    } finally {
      agent.child.kill('SIGCONT');
    }
    await waitFor('renewal attempt with the expired certificate fails', () => agent.log().includes('"msg":"certificate renewal failed; will retry"'), 15_000, 200);
    await sleep(2000);
    const n = (JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string; status: string; connected: boolean }[]).find((x) => x.name === 'redis-01')!;
    expect(n.connected).toBe(false);
    expect(n.status).toBe('NotReady');
  });
});
