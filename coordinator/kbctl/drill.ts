import type { CoordinatorStatusResponse, NodeInfo, RolloutEvent } from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';
import type { ControlClient } from './client.js';

/** What `kbctl drill coordinator-failover` measured. Times are milliseconds after the kill (or the cut). */
export interface FailoverReport {
  /** kill: SIGKILL of the leader; isolate: the leader cut off from etcd for `isolateMs`. */
  mode: 'kill' | 'isolate';
  /** The leader the drill failed (killed, or isolated: killAtMs is when it was cut off). */
  killed: { id: string; name: string; address: string; pid: number; term: number; killAtMs: number };
  /**
   * isolate only: what the isolated leader did. steppedDownMs: cut -> it stopped acting as
   * leader (at most the lease TTL); rejoinedMs: cut -> it was a follower again after the
   * isolation; lastWriteRevision: etcd revision of its last write that landed, which must be
   * below the new leader's term (no write of the old leader landed after the takeover).
   */
  isolated: { isolateMs: number; leaseTtlMs: number; steppedDownMs: number | null; rejoinedMs: number | null; lastWriteRevision: number; role: string } | null;
  newLeader: { id: string; name: string; address: string; term: number } | null;
  /** Kill -> the new leader's own "became leader" time. */
  newLeaderMs: number | null;
  agents: {
    /** Agents connected before the kill. */
    total: number;
    /** Of those, how many were connected to the killed leader. */
    onKilledLeader: number;
    /** Kill -> the last of them connected again (to a live replica); 0 when none had to move. */
    reconnectedMs: number | null;
    notReconnected: string[];
  };
  containers: { checked: number; stopped: StoppedContainer[] };
  rollout: { id: string; module: string; revision: number; state: string; completed: boolean; appliedTwice: string[] } | null;
  pass: boolean;
  problems: string[];
}

export interface StoppedContainer {
  node: string;
  module: string;
  name: string;
  /** What changed: "missing", "state exited", "restarted (started ... -> ...)", "replaced without a rollout asking". */
  what: string;
}

export interface FailoverDrillOptions {
  /** Start a rollout of this module first and kill the leader while it is in flight. */
  rollout?: { module: string; maxParallel: number; healthyDeadlineMs: number; minHealthyTimeMs: number };
  /** Longest wait for each phase (new leader, agents back, rollout done). Default 120 s. */
  timeoutMs?: number;
  /** Poll period. Default 100 ms. */
  pollMs?: number;
  /** Isolate the leader from etcd for this long instead of killing it (must exceed the lease TTL). */
  isolateMs?: number;
  progress?: (line: string) => void;
}

export class DrillError extends KbError {
  override name = 'DrillError';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Calls `fn` every `everyMs` until it returns a value (errors count as no value), or undefined after `timeoutMs`. */
async function poll<T>(timeoutMs: number, everyMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) return undefined;
    await sleep(everyMs);
  }
}

/**
 * Kills (SIGKILL) the current leader replica and measures the failover, from the
 * surviving replicas' point of view:
 *  1. finds the leader and the other replicas (CoordinatorStatus), notes every agent's
 *     session and every managed container (id, state, start time);
 *  2. optionally starts a rollout and waits until it is in flight;
 *  3. asks the leader to kill itself (the Drill RPC; it answers with the kill time);
 *  4. waits for a new leader, for every agent to be connected to a live replica, and for
 *     the rollout to end;
 *  5. compares containers: any that is gone, not running, restarted, or replaced on a
 *     node the rollout was not asked to change, counts as stopped (none may).
 */
export async function coordinatorFailoverDrill(client: ControlClient, opts: FailoverDrillOptions = {}): Promise<FailoverReport> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const pollMs = opts.pollMs ?? 100;
  const say = opts.progress ?? (() => undefined);
  const problems: string[] = [];

  const first = await client.coordinatorStatus();
  if (first.store !== 'etcd') throw new DrillError(`coordinator ${first.name} runs alone on ${first.store}: a failover drill needs several replicas on etcd`);
  if (!first.leaderAddress) throw new DrillError(`no leader is elected right now (asked ${first.name}); retry in a few seconds`);
  const leader = await client.coordinatorStatus(first.leaderAddress);
  if (leader.role !== 'leader') throw new DrillError(`${leader.name} at ${first.leaderAddress} says it is ${leader.role}, not leader; retry in a few seconds`);
  const survivors = leader.replicas.filter((r) => r.id !== leader.id);
  if (!survivors.length) throw new DrillError(`no other coordinator replica is alive besides the leader ${leader.name}: killing it would leave no coordinator`);
  say(`leader ${leader.name} at ${leader.address} (term ${leader.term}); other replicas: ${survivors.map((r) => `${r.name} at ${r.address}`).join(', ')}`);

  let rolloutId = '';
  if (opts.rollout) {
    const r = opts.rollout;
    await client.rollout({ module: r.module, maxParallel: r.maxParallel, healthyDeadlineMs: r.healthyDeadlineMs, minHealthyTimeMs: r.minHealthyTimeMs, undo: false, wait: false }, (u) => {
      if (u.info) rolloutId = u.info.id;
    });
    if (!rolloutId) throw new DrillError(`rollout of ${r.module} did not start`);
    const inFlight = await poll(timeoutMs, pollMs, async () => {
      const s = await client.rolloutStatus({ module: r.module, events: false });
      if (!s.rollout || s.rollout.id !== rolloutId) return undefined;
      if (s.rollout.state !== 'running') return s.rollout.state;
      return s.rollout.nodes.some((n) => n.state === 'applying' || n.state === 'verifying') ? 'in flight' : undefined;
    });
    if (inFlight !== 'in flight') throw new DrillError(`rollout ${rolloutId} ended (${inFlight ?? 'timeout'}) before the leader could be killed in the middle of it`);
    say(`rollout ${rolloutId} in flight`);
  }

  const before = (await client.listNodes()).nodes;
  const connectedBefore = before.filter((n) => n.connected);
  const onLeader = connectedBefore.filter((n) => n.coordinator.endsWith(` ${leader.address}`));

  const mode = opts.isolateMs ? 'isolate' : 'kill';
  const kill = await client.coordinatorDrill(leader.address, { action: mode, expectReplica: leader.id, isolateMs: opts.isolateMs ?? 0 });
  if (mode === 'kill') say(`leader ${kill.name} (pid ${kill.pid}) kills itself at ${new Date(kill.killAtMs).toISOString()}`);
  else say(`leader ${kill.name} (pid ${kill.pid}) cut off from etcd at ${new Date(kill.killAtMs).toISOString()} for ${opts.isolateMs} ms`);

  // A new leader: a surviving replica that leads a term other than the killed one's.
  const statuses = async (): Promise<CoordinatorStatusResponse[]> => (await Promise.all(survivors.map((r) => client.coordinatorStatus(r.address).catch(() => undefined)))).filter((s): s is CoordinatorStatusResponse => Boolean(s));
  const elected = await poll(timeoutMs, pollMs, async () => (await statuses()).find((s) => s.role === 'leader' && s.id !== kill.id && s.term !== kill.term));
  if (!elected) problems.push(`no new leader within ${timeoutMs} ms`);
  else say(`new leader ${elected.name} at ${elected.address} (term ${elected.term}) after ${elected.leaderSinceMs - kill.killAtMs} ms`);

  // Every agent connected before is connected again, to a live replica.
  const liveAddresses = new Set(survivors.map((r) => r.address));
  let after: NodeInfo[] = [];
  const back = await poll(timeoutMs, Math.max(pollMs, 200), async () => {
    after = (await client.listNodes()).nodes;
    const ok = connectedBefore.every((b) => {
      const a = after.find((x) => x.name === b.name);
      return a?.connected && a.status === 'Ready' && [...liveAddresses].some((addr) => a.coordinator.endsWith(` ${addr}`));
    });
    return ok ? true : undefined;
  });
  const notReconnected = back ? [] : connectedBefore.filter((b) => {
    const a = after.find((x) => x.name === b.name);
    return !(a?.connected && [...liveAddresses].some((addr) => a.coordinator.endsWith(` ${addr}`)));
  }).map((b) => b.name);
  if (notReconnected.length) problems.push(`agents not connected again within ${timeoutMs} ms: ${notReconnected.join(', ')}`);
  const moved = after.filter((a) => onLeader.some((b) => b.name === a.name));
  const reconnectedMs = back ? Math.max(0, ...moved.map((a) => a.connectedMs - kill.killAtMs)) : null;
  if (back) say(`${connectedBefore.length} agents connected (${onLeader.length} moved off the killed leader) after ${reconnectedMs} ms`);

  let rollout: FailoverReport['rollout'] = null;
  let askedToChange = new Set<string>();
  if (opts.rollout) {
    const module = opts.rollout.module;
    const done = await poll(timeoutMs, Math.max(pollMs, 250), async () => {
      const s = await client.rolloutStatus({ module, events: true });
      return s.rollout && s.rollout.id === rolloutId && s.rollout.state !== 'running' ? s : undefined;
    });
    if (!done?.rollout) {
      problems.push(`rollout ${rolloutId} did not finish within ${timeoutMs} ms`);
      rollout = { id: rolloutId, module, revision: 0, state: 'running', completed: false, appliedTwice: [] };
    } else {
      const twice = appliedTwice(done.events);
      // The nodes the rollout was asked to change (its node list), whether or not the
      // killed leader lived long enough to log their apply results.
      askedToChange = new Set(done.rollout.nodes.map((n) => `${n.node}/${module}`));
      rollout = { id: rolloutId, module, revision: done.rollout.revision, state: done.rollout.state, completed: done.rollout.state === 'succeeded', appliedTwice: twice };
      if (!rollout.completed) problems.push(`rollout ${rolloutId} ended ${done.rollout.state}: ${done.rollout.error}`);
      if (twice.length) problems.push(`revision applied twice on ${twice.join(', ')}`);
      say(`rollout ${rolloutId} ${done.rollout.state}`);
    }
  }

  // Containers: wait until every one seen before is reported running again (fresh reports), then compare.
  const checked = before.reduce((n, b) => n + b.containers.filter((c) => c.state === 'running').length, 0);
  await poll(Math.min(timeoutMs, 15_000), Math.max(pollMs, 250), async () => {
    after = (await client.listNodes()).nodes;
    return before.every((b) => b.containers.filter((c) => c.state === 'running').every((c) => after.find((a) => a.name === b.name)?.containers.some((x) => x.module === c.module && x.name === c.name && x.state === 'running'))) ? true : undefined;
  });
  const stopped = stoppedContainers(before, after, askedToChange);
  if (stopped.length) problems.push(`managed containers stopped: ${stopped.map((s) => `${s.node}/${s.name} (${s.what})`).join(', ')}`);

  // isolate: the old leader must have stopped acting within its lease TTL, must come back as
  // a follower once etcd is reachable again, and none of its writes may have landed after
  // the new leader's term began.
  let isolated: FailoverReport['isolated'] = null;
  if (mode === 'isolate') {
    const isolateMs = opts.isolateMs!;
    const waitMs = Math.max(0, kill.killAtMs + isolateMs - Date.now()) + timeoutMs;
    const old = await poll(waitMs, Math.max(pollMs, 200), async () => {
      const s = await client.coordinatorStatus(leader.address);
      return s.id !== kill.id && (s.role === 'follower' || s.role === 'leader') ? s : undefined;
    });
    const last = old ?? await client.coordinatorStatus(leader.address).catch(() => undefined);
    isolated = {
      isolateMs, leaseTtlMs: leader.leaseTtlMs,
      steppedDownMs: last && last.steppedDownMs >= kill.killAtMs ? last.steppedDownMs - kill.killAtMs : null,
      rejoinedMs: old ? Math.max(0, Date.now() - kill.killAtMs) : null,
      lastWriteRevision: last?.lastLeaderWriteRevision ?? 0,
      role: last?.role ?? 'not answering',
    };
    if (isolated.steppedDownMs === null) problems.push(`the isolated leader ${kill.name} does not say it stepped down`);
    else if (isolated.steppedDownMs > leader.leaseTtlMs) problems.push(`the isolated leader ${kill.name} kept acting as leader for ${isolated.steppedDownMs} ms, longer than its lease TTL (${leader.leaseTtlMs} ms)`);
    if (!old) problems.push(`the isolated leader ${kill.name} did not rejoin as a follower within ${timeoutMs} ms after the isolation (${isolated.role})`);
    if (elected && isolated.lastWriteRevision >= elected.term) problems.push(`a write of the isolated leader ${kill.name} landed at revision ${isolated.lastWriteRevision}, after the new term ${elected.term} began`);
    if (old) say(`${kill.name} back as ${old.role} after ${isolated.rejoinedMs} ms; it stepped down ${isolated.steppedDownMs} ms after the cut`);
  }

  return {
    mode,
    isolated,
    killed: { id: kill.id, name: kill.name, address: kill.address, pid: kill.pid, term: kill.term, killAtMs: kill.killAtMs },
    newLeader: elected ? { id: elected.id, name: elected.name, address: elected.address, term: elected.term } : null,
    newLeaderMs: elected ? elected.leaderSinceMs - kill.killAtMs : null,
    agents: { total: connectedBefore.length, onKilledLeader: onLeader.length, reconnectedMs, notReconnected },
    containers: { checked, stopped },
    rollout,
    pass: problems.length === 0,
    problems,
  };
}

/**
 * Containers running before that are not running as before afterwards: gone, in another
 * state, restarted (same id, new start time), or replaced (new id) on a node/module the
 * rollout was not asked to change (`changed` holds "node/module"). Pure.
 */
export function stoppedContainers(before: NodeInfo[], after: NodeInfo[], changed: Set<string>): StoppedContainer[] {
  const out: StoppedContainer[] = [];
  for (const b of before) {
    const a = after.find((x) => x.name === b.name);
    for (const c of b.containers.filter((x) => x.state === 'running')) {
      const now = a?.containers.find((x) => x.module === c.module && x.name === c.name);
      const base = { node: b.name, module: c.module, name: c.name };
      if (!now || now.state === 'missing') out.push({ ...base, what: 'missing' });
      else if (now.state !== 'running') out.push({ ...base, what: `state ${now.state}` });
      else if (now.id === c.id && now.startedAt !== c.startedAt) out.push({ ...base, what: `restarted (started ${c.startedAt} -> ${now.startedAt})` });
      else if (now.id !== c.id && !changed.has(`${b.name}/${c.module}`)) out.push({ ...base, what: 'replaced without a rollout asking' });
    }
  }
  return out;
}

/** "node@revision" of every node that reported applying the same revision more than once. Pure. */
export function appliedTwice(events: RolloutEvent[]): string[] {
  const counts = new Map<string, number>();
  for (const e of events) {
    if (e.kind !== 'node-applied' || !e.message.startsWith('applied:')) continue;
    const k = `${e.node}@${e.revision}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts].filter(([, n]) => n > 1).map(([k]) => k);
}

/** The report as text lines (the table form of `kbctl drill coordinator-failover`). */
export function formatFailoverReport(r: FailoverReport): string[] {
  const s = (ms: number | null) => (ms === null ? '-' : `${(ms / 1000).toFixed(2)} s`);
  const lines = [
    r.mode === 'isolate'
      ? `isolated leader:      ${r.killed.name} at ${r.killed.address} (pid ${r.killed.pid}, term ${r.killed.term}) cut off from etcd at ${new Date(r.killed.killAtMs).toISOString()} for ${s(r.isolated?.isolateMs ?? null)}`
      : `killed leader:        ${r.killed.name} at ${r.killed.address} (pid ${r.killed.pid}, term ${r.killed.term}) at ${new Date(r.killed.killAtMs).toISOString()}`,
    `new leader:           ${r.newLeader ? `${r.newLeader.name} at ${r.newLeader.address} (term ${r.newLeader.term}) after ${s(r.newLeaderMs)}` : 'NONE'}`,
    `agents reconnected:   ${r.agents.total - r.agents.notReconnected.length}/${r.agents.total} after ${s(r.agents.reconnectedMs)} (${r.agents.onKilledLeader} were on the killed leader)`,
    `containers stopped:   ${r.containers.stopped.length} of ${r.containers.checked} managed containers${r.containers.stopped.length ? `: ${r.containers.stopped.map((c) => `${c.node}/${c.name} (${c.what})`).join(', ')}` : ''}`,
    `in-flight rollout:    ${r.rollout ? `${r.rollout.id} ${r.rollout.completed ? 'completed' : `NOT completed (${r.rollout.state})`} at revision ${r.rollout.revision}${r.rollout.appliedTwice.length ? `; applied twice: ${r.rollout.appliedTwice.join(', ')}` : '; no revision applied twice'}` : 'none (use --rollout MODULE)'}`,
    ...(r.isolated ? [`old leader:           stepped down after ${s(r.isolated.steppedDownMs)} (lease TTL ${s(r.isolated.leaseTtlMs)}); ${r.isolated.rejoinedMs === null ? `NOT back (${r.isolated.role})` : `back as ${r.isolated.role} after ${s(r.isolated.rejoinedMs)}`}; last write landed at revision ${r.isolated.lastWriteRevision}`] : []),
    `result:               ${r.pass ? 'PASS' : `FAIL: ${r.problems.join('; ')}`}`,
  ];
  return lines;
}

