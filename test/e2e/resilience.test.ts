import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, REDIS_NODES } from '../helpers/cluster.js';
import { sleep, waitFor } from '../helpers/proc.js';
import { agentAppliedRevisions, appliedCounts } from '../helpers/rollout-checks.js';
import { registryDigest } from '../helpers/registry.js';

// Crashes and outages on the real engine: kill -9 of the coordinator and of an agent in
// the middle of work, and a coordinator that is simply gone.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '60s'];
let cluster: Cluster;
let bystanderId: string;
let bystanderStarted: string;

beforeAll(async () => {
  cluster = new Cluster();
  await cluster.start();
  // A container kb does not manage, on the same engine: it must be untouched throughout.
  const old = await cluster.docker.listContainers({ all: true, filters: { name: ['kb-e2e-bystander'] } });
  for (const c of old) await cluster.docker.getContainer(c.Id).remove({ force: true });
  const by = await cluster.docker.createContainer({ name: 'kb-e2e-bystander', Image: cluster.tb.images.busybox, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'host' } });
  await by.start();
  const info = await by.inspect();
  bystanderId = info.Id;
  bystanderStarted = info.State.StartedAt;
  const r = await cluster.kbctl(['rollout', 'redis', ...GATE]);
  if (r.code !== 0) throw new Error(`initial rollout failed: ${r.stdout}\n${r.stderr}\n${cluster.dumpLogs()}`);
});

afterAll(async () => {
  await cluster?.docker.getContainer('kb-e2e-bystander').remove({ force: true }).catch(() => undefined);
  await cluster?.stop();
});

describe('resilience on the real engine', () => {
  it('kill -9 of the coordinator mid-rollout: a restart resumes and completes it, no node applies a revision twice', async () => {
    cluster.useVersions('bump');
    const detached = await cluster.kbctl(['rollout', 'redis', '--detach', ...GATE]);
    expect(detached.code).toBe(0);
    // Wait until the first node is done and the second is in flight, then kill -9.
    await waitFor('second node in flight', async () => {
      const { events } = await cluster.events();
      return events.some((e) => e.node === 'redis-02' && e.kind === 'node-apply');
    }, 60_000, 50);
    await cluster.coordinator!.kill('SIGKILL');
    await sleep(500);
    await cluster.startCoordinator();
    const final = await waitFor('rollout finished after restart', async () => {
      const s = await cluster.events();
      return s.rollout.state !== 'running' && s;
    }, 90_000, 250);
    if (final.rollout.state !== 'succeeded') console.log(JSON.stringify(final, null, 1), cluster.dumpLogs());
    expect(final.rollout.state).toBe('succeeded');
    expect(final.events.some((e) => e.kind === 'rollout-resume')).toBe(true);
    for (const [k, n] of appliedCounts(final.events)) expect(n, k).toBe(1);
    for (const n of REDIS_NODES) {
      const revs = agentAppliedRevisions(cluster.dir, n.name);
      expect(new Set(revs).size, `${n.name} applied revisions ${revs.join(',')}`).toBe(revs.length);
    }
    const digest2 = await registryDigest(cluster.tb.images.redis2);
    for (const n of REDIS_NODES) expect(await cluster.runningDigest((await cluster.container(n.name, 'redis'))!)).toContain(digest2);
  });

  it('kill -9 of an agent mid-apply: after a restart it converges; an unmanaged container is untouched', async () => {
    // The agent of redis-01 is restarted with a test-only pause point: after it has put the
    // new desired state on disk and removed the old container, it waits, and we kill -9 it there.
    await cluster.agents.get('redis-01')!.kill('SIGKILL');
    const paused = await cluster.startAgent('redis-01', { KB_TEST_PAUSE: 'container-removed:30000' });
    await cluster.waitReady(['redis-01']);
    cluster.useVersions('original');
    const detached = await cluster.kbctl(['rollout', 'redis', '--detach', ...GATE]);
    expect(detached.code).toBe(0);
    await waitFor('redis-01 paused mid-apply', () => paused.log().includes('test pause point container-removed'), 30_000, 20);
    expect(await cluster.container('redis-01', 'redis')).toBeUndefined();
    await paused.kill('SIGKILL');
    await sleep(300);
    await cluster.startAgent('redis-01');
    const final = await waitFor('rollout finished', async () => {
      const s = await cluster.events();
      return s.rollout.state !== 'running' && s;
    }, 90_000, 250);
    if (final.rollout.state !== 'succeeded') console.log(JSON.stringify(final, null, 1), cluster.dumpLogs());
    expect(final.rollout.state).toBe('succeeded');
    const digest1 = await registryDigest(cluster.tb.images.redis1);
    for (const n of REDIS_NODES) {
      const c = (await cluster.container(n.name, 'redis'))!;
      expect(c.State.Running).toBe(true);
      expect(await cluster.runningDigest(c)).toContain(digest1);
    }
    const by = await cluster.docker.getContainer('kb-e2e-bystander').inspect();
    expect(by.Id).toBe(bystanderId);
    expect(by.State.Running).toBe(true);
    expect(by.State.StartedAt).toBe(bystanderStarted);
  });

  it('with the coordinator stopped, containers keep running and a managed container stopped or removed by hand comes back', async () => {
    await cluster.coordinator!.kill('SIGKILL');
    const ids = await Promise.all(REDIS_NODES.map(async (n) => (await cluster.container(n.name, 'redis'))!.Id));
    await sleep(3000);
    for (const [i, n] of REDIS_NODES.entries()) {
      const c = (await cluster.container(n.name, 'redis'))!;
      expect(c.Id).toBe(ids[i]);
      expect(c.State.Running).toBe(true);
    }
    // docker stop: Docker's restart policy does not restart a container stopped by hand; the agent does.
    await cluster.docker.getContainer(ids[1]!).stop({ t: 1 });
    // docker rm -f: only the agent's on-disk desired state can bring this one back.
    await cluster.docker.getContainer(ids[2]!).remove({ force: true });
    await waitFor('redis-02 running again', async () => (await cluster.container('redis-02', 'redis'))?.State.Running, 20_000, 200);
    const c3 = await waitFor('redis-03 recreated', async () => {
      const c = await cluster.container('redis-03', 'redis');
      return c?.State.Running && c;
    }, 30_000, 200);
    expect(c3.Id).not.toBe(ids[2]);
    const by = await cluster.docker.getContainer('kb-e2e-bystander').inspect();
    expect(by.Id).toBe(bystanderId);
    expect(by.State.StartedAt).toBe(bystanderStarted);
  });
});
