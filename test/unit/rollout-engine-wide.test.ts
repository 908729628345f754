import { EventEmitter } from 'node:events';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { ImageResolver } from '../../coordinator/images/resolve.js';
import { heapGrowth } from '../../coordinator/memory.js';
import { getModule } from '../../coordinator/modules/index.js';
import { computeDesired } from '../../coordinator/planner.js';
import { nodeList, nodePhases, RolloutEngine, saveSpacingMs, SEND_TURN_MS, WIDE_BATCH } from '../../coordinator/rollout/engine.js';
import type { NodeSessionView } from '../../coordinator/sessions.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { AssignmentRecord, RolloutRecord } from '../../coordinator/store/types.js';
import type { CoordinatorMessage, ModuleHealth, ModuleState } from '../../proto/types.js';
import { parseInventory } from '../../shared/inventory/index.js';
import { parseVersions } from '../../shared/versions/index.js';

const HEADER = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
const row = (name: string, ip: string, role: string, subrole: string) => `prod\t-\t${name}\t${ip}\t${name}.t\troot\tp\t${role}\t${subrole}\tx\tyes\tn`;
const resolver: ImageResolver = { resolve: async (ref) => `${ref}@sha256:${'a'.repeat(64)}` };

/** The store, recording when each assignment became durable and how often the rollout record was written. */
class CountingStore extends SqliteStore {
  rolloutWrites = 0;
  readonly durable = new Map<string, AssignmentRecord>();
  override async putRollout(r: RolloutRecord): Promise<void> {
    this.rolloutWrites++;
    await super.putRollout(r);
  }
  override async putAssignment(a: AssignmentRecord): Promise<void> {
    await super.putAssignment(a);
    this.durable.set(a.node, a);
  }
}

/** Sessions of simulated agents that report the state they are sent as converged and healthy. */
class Agents extends EventEmitter {
  readonly views = new Map<string, NodeSessionView>();
  get(node: string): NodeSessionView | undefined {
    return this.views.get(node);
  }
  all(): NodeSessionView[] {
    return [...this.views.values()];
  }
}

/** Inventory and versions of `redis` Redis rows and n lb nodes (lb-0 ...), and an idle session for each lb node. */
function fleet(n: number, redis: 1 | 3 = 1) {
  const rows = [row('redis-01', '127.0.1.1', 'redis', 'master'), row('redis-02', '127.0.1.2', 'redis', 'replica'), row('redis-03', '127.0.1.3', 'redis', 'replica')].slice(0, redis);
  for (let i = 0; i < n; i++) rows.push(row(`lb-${i}`, `127.0.${2 + Math.floor(i / 250)}.${(i % 250) + 1}`, 'lb', 'internal-haproxy'));
  const inventory = parseInventory(`${[HEADER, ...rows].join('\n')}\n`, 'servers.tsv');
  const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 'versions.yaml');
  const agents = new Agents();
  for (let i = 0; i < n; i++) agents.views.set(`lb-${i}`, { node: `lb-${i}`, agentVersion: 't', connectedMs: 0, lastSeenMs: 0, facts: null, health: new Map(), containers: [] });
  return { inventory, versions, agents };
}

/** A fresh store file. */
const dbFile = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-engine-')), 'kb.db');

/** Counts event-loop turns (an immediate that re-arms itself) until stopped. */
function turns() {
  let turn = 0;
  let ticking = true;
  const tick = () => { turn++; if (ticking) setImmediate(tick); };
  setImmediate(tick);
  return { get now() { return turn; }, stop: () => { ticking = false; } };
}

describe('rollout engine, one wide batch', () => {
  it('sends each node its state only once its assignment is durable, and writes the rollout record far fewer times than nodes change phase', async () => {
    const n = 400;
    const { inventory, versions, agents } = fleet(n, 3);
    const store = new CountingStore(dbFile());
    const sentBeforeDurable: string[] = [];
    const sent = new Map<string, number>();
    // Heap growth (ADR 0022), recorded instead of applied to this process's V8.
    const flags: string[] = [];
    heapGrowth.configure(20, (f) => flags.push(f));
    const relaxedAtSend = new Set<number>();
    let durableAtFirstSend: number | undefined;
    // Event-loop turns, counted by an immediate that re-arms itself: the turn of each send.
    const turn = turns();
    const sendTurns = new Set<number>();
    const deliver = (node: string, msg: CoordinatorMessage) => {
      durableAtFirstSend ??= store.durable.size;
      sendTurns.add(turn.now);
      relaxedAtSend.add(heapGrowth.relaxedBy);
      const st = msg.desired!;
      if (store.durable.get(node)?.revision !== st.revision) sentBeforeDurable.push(node);
      sent.set(node, (sent.get(node) ?? 0) + 1);
      // Each agent answers on its own time (within 300 ms): healthy at this revision.
      setTimeout(() => {
        const m: ModuleHealth = { module: 'haproxy', revision: st.revision, specHash: st.specHash, healthy: true, converged: true, checks: [] };
        agents.views.get(node)!.health.set('haproxy', m);
        agents.emit('health', node, { modules: [m] });
      }, Math.random() * 300);
    };
    const lines: { kind?: string; node?: string; nodes?: number; first?: string[]; msg: string }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l)); } });
    const engine = new RolloutEngine({
      store, sessions: agents as never, resolver, log, deliver,
      inputs: () => ({ inventory, versions, settings: {} }),
    });
    const t0 = Date.now();
    const r = await engine.start('haproxy', { maxParallel: n, minHealthyTimeMs: 0, healthyDeadlineMs: 60_000 });
    await engine.wait(r.id);
    const elapsed = Date.now() - t0;
    turn.stop();
    // Every state went out in one event-loop turn (well within SEND_TURN_MS): none waited
    // behind the handling of the first nodes' answers.
    expect(sendTurns.size).toBe(1);
    const done = await store.getRollout(r.id);
    expect(done?.state).toBe('succeeded');
    expect(done?.nodes.every((x) => x.phase === 'healthy')).toBe(true);
    expect(sent.size).toBe(n);
    expect([...sent.values()].every((c) => c === 1)).toBe(true);
    expect(sentBeforeDurable).toEqual([]);
    // The batch's assignments are all written (one transaction) before the first state is sent.
    expect(durableAtFirstSend).toBe(n);
    // The last gate gone, the engine no longer listens to the sessions.
    for (const ev of ['health', 'result', 'progress', 'connected']) expect(agents.listenerCount(ev), ev).toBe(0);
    // Every node changes phase three times (applying, verifying, healthy): 3n saves asked for,
    // the answers spread over 300 ms (hundreds of event-loop turns),
    // coalesced (one write per event-loop turn at most) and paced (at most one per 80 ms at this width).
    expect(store.rolloutWrites).toBeLessThanOrEqual(Math.ceil(elapsed / 80) + 3);
    // Wider than WIDE_BATCH: the sending is one batch-apply event, not one node-apply per node;
    // what each node did is still one event per node.
    const events = await store.listEvents(r.id);
    const count = (kind: string) => events.filter((e) => e.kind === kind).length;
    expect(n).toBeGreaterThan(WIDE_BATCH);
    expect(count('batch-apply')).toBe(1);
    expect(events.find((e) => e.kind === 'batch-apply')!.message).toContain(`to ${n} nodes (lb-0 ... lb-${n - 1})`);
    // The rollout's own start event names the count and the first and last node, not all 400.
    const started = events.find((e) => e.kind === 'rollout-start')!.message;
    expect(started).toMatch(new RegExp(`^revision 1 \\(from 0\\) on ${n} nodes \\(lb-0 \\.\\.\\. lb-${n - 1}\\); max_parallel ${n}; images `));
    expect(started.length).toBeLessThan(300);
    expect(count('node-apply')).toBe(0);
    expect(count('node-healthy')).toBe(n);
    // In the log, the nodes' events are digests (one line per kind per second, naming the
    // first 10 nodes and the count), and come before the rollout's last line.
    const healthy = lines.filter((l) => l.kind === 'node-healthy');
    expect(healthy.length).toBeGreaterThan(0);
    expect(healthy.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 1);
    expect(healthy.reduce((a, l) => a + l.nodes!, 0)).toBe(n);
    expect(healthy[0]!.first!.length).toBe(Math.min(10, healthy[0]!.nodes!));
    expect(healthy[0]!.msg).toMatch(/^node-healthy on \d+ nodes \(lb-\d+, .*, and \d+ more\); the first said: healthy for 0 ms/);
    expect(lines.filter((l) => l.node?.startsWith('lb-'))).toEqual([]);
    const last = lines.findIndex((l) => l.kind === 'rollout-succeeded');
    expect(last).toBe(lines.length - 1);
    // Once the wide batch is over, one full collection (ADR 0021), logged with the heap before and after.
    const collected = lines.filter((l) => l.msg.startsWith('memory collected after a batch of 400 nodes: heap '));
    expect(collected).toHaveLength(1);
    expect((collected[0] as unknown as { heapTotalMb: number[] }).heapTotalMb).toHaveLength(2);
    // Heap growth was relaxed from planning until the wide batch was over (every state was
    // sent while relaxed), then set back to its value at rest, once.
    expect([...relaxedAtSend]).toEqual([1]);
    expect(flags).toEqual(['--heap-growing-percent=0', '--heap-growing-percent=20']);
    expect(heapGrowth.relaxedBy).toBe(0);
    heapGrowth.configure(undefined);
    await engine.stop();
    await store.close();
  });

  it('sends no node its state when the store refuses an assignment of the batch', async () => {
    const n = 150;
    const { inventory, versions, agents } = fleet(n);
    class RefusingStore extends SqliteStore {
      override async putAssignment(a: AssignmentRecord): Promise<void> {
        if (a.node === 'lb-77') throw new Error('disk I/O error');
        await super.putAssignment(a);
      }
    }
    const store = new RefusingStore(dbFile());
    const sent: string[] = [];
    const flags: string[] = [];
    heapGrowth.configure(20, (f) => flags.push(f));
    const engine = new RolloutEngine({
      store, sessions: agents as never, resolver, log: pino({ level: 'silent' }), deliver: (node) => sent.push(node),
      inputs: () => ({ inventory, versions, settings: {} }),
    });
    const r = await engine.start('haproxy', { maxParallel: n });
    await engine.wait(r.id);
    const done = await store.getRollout(r.id);
    expect(done?.state).toBe('failed');
    expect(done?.error).toBe('internal error: disk I/O error');
    expect(sent).toEqual([]);
    // The batch's hold on relaxed heap growth is released with the failure, not left behind.
    expect(heapGrowth.relaxedBy).toBe(0);
    expect(flags.at(-1)).toBe('--heap-growing-percent=20');
    heapGrowth.configure(undefined);
    await engine.stop();
    await store.close();
  });

  it(`yields to I/O once sending has run ${SEND_TURN_MS} ms in one turn, so a slow batch does not starve keepalive pings`, async () => {
    const n = 300;
    const { inventory, versions, agents } = fleet(n);
    const store = new SqliteStore(dbFile());
    const turn = turns();
    const sendTurns: number[] = [];
    // A slow send: 5 ms each, 1.5 s for the batch.
    const deliver = (node: string, msg: CoordinatorMessage) => {
      for (const until = performance.now() + 5; performance.now() < until;) { /* busy */ }
      sendTurns.push(turn.now);
      const st = msg.desired!;
      const m: ModuleHealth = { module: 'haproxy', revision: st.revision, specHash: st.specHash, healthy: true, converged: true, checks: [] };
      setImmediate(() => { agents.views.get(node)!.health.set('haproxy', m); agents.emit('health', node, { modules: [m] }); });
    };
    heapGrowth.configure(undefined);
    const engine = new RolloutEngine({ store, sessions: agents as never, resolver, log: pino({ level: 'silent' }), deliver, inputs: () => ({ inventory, versions, settings: {} }) });
    const r = await engine.start('haproxy', { maxParallel: n, minHealthyTimeMs: 0, healthyDeadlineMs: 60_000 });
    await engine.wait(r.id);
    turn.stop();
    expect((await store.getRollout(r.id))?.state).toBe('succeeded');
    expect(sendTurns).toHaveLength(n);
    // Nodes start in groups of 100: a turn ends at the first group boundary after 500 ms of sending.
    const perTurn = [...sendTurns.reduce((m, t) => m.set(t, (m.get(t) ?? 0) + 1), new Map<number, number>()).values()];
    expect(perTurn.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...perTurn)).toBeLessThanOrEqual(200);
    await engine.stop();
    await store.close();
  });

  it('fails a node whose message cannot be made (a credentials value missing) with check credentials, and still sends every other node its state', async () => {
    const n = 150;
    const { inventory, versions, agents } = fleet(n);
    const store = new SqliteStore(dbFile());
    const sent = new Map<string, CoordinatorMessage>();
    const deliver = (node: string, msg: CoordinatorMessage) => {
      sent.set(node, msg);
      const st = msg.desired!;
      const m: ModuleHealth = { module: 'haproxy', revision: st.revision, specHash: st.specHash, healthy: true, converged: true, checks: [] };
      setImmediate(() => { agents.views.get(node)!.health.set('haproxy', m); agents.emit('health', node, { modules: [m] }); });
    };
    // The secret store: redis@1 for every node, except that lb-42's message cannot be made.
    let lb42: string | undefined;
    const secrets = {
      versions: async () => ({ redis: { active: 1, accepted: [] } }),
      desiredMessage: async (state: ModuleState): Promise<CoordinatorMessage> => {
        if (state.specHash === lb42) throw new Error('secret redis has no version 1');
        return { desired: state, secretValues: [{ name: 'redis', version: 1, vars: { REDIS_PASSWORD: 'x'.repeat(32) } }] };
      },
    };
    heapGrowth.configure(undefined);
    const engine = new RolloutEngine({ store, sessions: agents as never, resolver, log: pino({ level: 'silent' }), deliver, secrets, inputs: () => ({ inventory, versions, settings: {} }) });
    lb42 = (await computeDesired(getModule('haproxy'), { inventory, versions, settings: {} }, resolver, await secrets.versions())).states['lb-42']!.specHash;
    const r = await engine.start('haproxy', { maxParallel: n, minHealthyTimeMs: 0, healthyDeadlineMs: 60_000 });
    await engine.wait(r.id);
    const done = (await store.getRollout(r.id))!;
    expect(done.state).toBe('failed');
    expect(done.failedNode).toBe('lb-42');
    expect(done.failedCheck).toBe('credentials');
    expect(done.error).toBe('lb-42: cannot deliver the credentials of revision 1: secret redis has no version 1');
    expect(done.nodes.find((x) => x.node === 'lb-42')!.phase).toBe('failed');
    expect(done.nodes.filter((x) => x.phase === 'healthy')).toHaveLength(n - 1);
    expect(sent.has('lb-42')).toBe(false);
    expect(sent.size).toBe(n - 1);
    expect(sent.get('lb-0')!.secretValues![0]!.name).toBe('redis');
    const failed = (await store.listEvents(r.id)).filter((e) => e.kind === 'node-failed');
    expect(failed.map((e) => [e.node, e.check])).toEqual([['lb-42', 'credentials']]);
    await engine.stop();
    await store.close();
  });

  it('names every node of a narrow rollout in its own events, and the count, first and last node of a wide one', () => {
    const names = (k: number) => Array.from({ length: k }, (_, i) => `lb-${i + 1}`);
    expect(nodeList(['redis-01', 'redis-02', 'redis-03'])).toBe('redis-01, redis-02, redis-03');
    expect(nodeList(names(WIDE_BATCH))).toBe(names(WIDE_BATCH).join(', '));
    expect(nodeList(names(WIDE_BATCH + 1))).toBe(`${WIDE_BATCH + 1} nodes (lb-1 ... lb-${WIDE_BATCH + 1})`);
    expect(nodePhases([{ node: 'redis-01', phase: 'healthy', error: '' }, { node: 'redis-02', phase: 'pending', error: '' }])).toBe('redis-01=healthy redis-02=pending');
    const wide = names(5000).map((node, i) => ({ node, phase: (i < 4990 ? 'applying' : 'healthy') as RolloutRecord['nodes'][number]['phase'], error: '' }));
    expect(nodePhases(wide)).toBe('5000 nodes (lb-1 ... lb-5000): 4990 applying, 10 healthy');
  });

  it('paces writes of a rollout record by its width', () => {
    expect(saveSpacingMs(3)).toBe(0);
    expect(saveSpacingMs(99)).toBe(0);
    expect(saveSpacingMs(400)).toBe(80);
    expect(saveSpacingMs(5000)).toBe(1000);
    expect(saveSpacingMs(50_000)).toBe(1000);
  });
});

/** The store, counting whole reads of the latest revision. */
class ReadCountingStore extends SqliteStore {
  latestReads = 0;
  nodeModuleReads = 0;
  override async latestRevision(module: string) {
    this.latestReads++;
    return super.latestRevision(module);
  }
  override async listNodeModules(q: { module?: string; node?: string } = {}) {
    this.nodeModuleReads++;
    return super.listNodeModules(q);
  }
}

describe('rollout engine, the latest revision', () => {
  it('is read whole only when another writer stored it: the spec hashes of its own last revision are kept', async () => {
    const { inventory, versions, agents } = fleet(3, 3);
    const file = dbFile();
    const store = new ReadCountingStore(file);
    const deliver = (node: string, msg: CoordinatorMessage) => {
      const st = msg.desired!;
      setImmediate(() => {
        const m: ModuleHealth = { module: 'haproxy', revision: st.revision, specHash: st.specHash, healthy: true, converged: true, checks: [] };
        agents.views.get(node)!.health.set('haproxy', m);
        agents.emit('health', node, { modules: [m] });
      });
    };
    let maxconn = 4096;
    const logged: string[] = [];
    const flags: string[] = [];
    heapGrowth.configure(20, (f) => flags.push(f));
    const engine = new RolloutEngine({
      store, sessions: agents as never, resolver, log: pino({ level: 'info' }, { write: (l: string) => { logged.push(l); } }), deliver,
      inputs: () => ({ inventory, versions, settings: { haproxy: { file: 'modules.yaml', values: { maxconn }, nodes: {} } } }),
    });
    const roll = async () => {
      const r = await engine.start('haproxy', { maxParallel: 3, minHealthyTimeMs: 0, healthyDeadlineMs: 10_000 });
      await engine.wait(r.id);
      return (await store.getRollout(r.id))!;
    };
    const first = await roll();
    expect([first.revision, first.fromRevision, first.state]).toEqual([1, 0, 'succeeded']);
    maxconn = 5000;
    const second = await roll();
    expect([second.revision, second.fromRevision, second.state]).toEqual([2, 1, 'succeeded']);
    expect(store.latestReads).toBe(0);
    // Same inputs again: no new revision, nothing to do (every node healthy at revision 2).
    const noop = await roll();
    expect([noop.revision, noop.state, noop.nodes.length]).toEqual([2, 'succeeded', 0]);
    expect(store.latestReads).toBe(0);
    // Another writer (a new leader) stored revision 3: the engine reads it whole, once.
    const three = (await store.getRevision('haproxy', 2))!;
    await store.putRevision({ ...three, revision: 3, createdMs: Date.now(), states: Object.fromEntries(Object.entries(three.states).map(([n, st]) => [n, { ...st, revision: 3, specHash: `other-${n}` }])) });
    maxconn = 6000;
    const fourth = await roll();
    expect([fourth.revision, fourth.fromRevision, fourth.state]).toEqual([4, 3, 'succeeded']);
    expect(store.latestReads).toBe(1);
    // Batches of 3 nodes: no forced collection, heap growth never relaxed, and node events logged one by one.
    expect(logged.filter((l) => l.includes('memory collected'))).toEqual([]);
    expect(flags).toEqual([]);
    heapGrowth.configure(undefined);
    expect(logged.filter((l) => l.includes('"kind":"node-healthy"') && l.includes('"node":"lb-0"'))).toHaveLength(3); // rollouts 1, 2 and 4 (the no-op drove none)
    await engine.stop();
    await store.close();
  });
});

describe('rollout engine, which nodes a rollout drives', () => {
  it('reads the stored module records only for a node without a live report, and skips a node they say is up to date', async () => {
    const { inventory, versions, agents } = fleet(3, 3);
    const store = new ReadCountingStore(dbFile());
    const driven: string[] = [];
    const deliver = (node: string, msg: CoordinatorMessage) => {
      driven.push(node);
      const st = msg.desired!;
      setImmediate(() => {
        const m: ModuleHealth = { module: 'haproxy', revision: st.revision, specHash: st.specHash, healthy: true, converged: true, checks: [] };
        agents.views.get(node)?.health.set('haproxy', m);
        agents.emit('health', node, { modules: [m] });
      });
    };
    let maxconn = 4096;
    const engine = new RolloutEngine({
      store, sessions: agents as never, resolver, log: pino({ level: 'silent' }), deliver,
      inputs: () => ({ inventory, versions, settings: { haproxy: { file: 'modules.yaml', values: { maxconn }, nodes: {} } } }),
    });
    const roll = async () => {
      driven.length = 0;
      const r = await engine.start('haproxy', { maxParallel: 3, minHealthyTimeMs: 0, healthyDeadlineMs: 10_000 });
      await engine.wait(r.id);
      return (await store.getRollout(r.id))!;
    };
    const reads = async () => {
      const before = store.nodeModuleReads;
      const r = await roll();
      return { r, reads: store.nodeModuleReads - before };
    };
    // First rollout: no node has reported the module yet, so the stored records are read
    // (once: when it ends, every node reports live).
    const first = await reads();
    expect([first.r.state, first.reads]).toEqual(['succeeded', 1]);
    // Every node reports live: the next rollout decides from the reports alone.
    maxconn = 5000;
    const second = await reads();
    expect([second.r.revision, second.r.state, second.r.nodes.length, second.reads]).toEqual([2, 'succeeded', 3, 0]);
    // lb-2's session is gone: its stored record is read (when the rollout starts and when it
    // ends); there is none, so lb-2 is driven again.
    const lb2 = agents.views.get('lb-2')!;
    agents.views.delete('lb-2');
    const third = await reads();
    expect([third.r.revision, third.r.nodes.map((x) => x.node), third.reads]).toEqual([2, ['lb-2'], 2]);
    // Its stored record says it runs revision 2's spec, healthy: nothing to do.
    const spec = (await store.getRevision('haproxy', 2))!.states['lb-2']!.specHash;
    await store.putNodeModule({ node: 'lb-2', module: 'haproxy', revision: 2, specHash: spec, healthy: true, converged: true, checks: [], updatedMs: Date.now() });
    const fourth = await reads();
    expect([fourth.r.state, fourth.r.nodes.length, driven, fourth.reads]).toEqual(['succeeded', 0, [], 1]);
    agents.views.set('lb-2', lb2);
    await engine.stop();
    await store.close();
  });
});

