/**
 * `kbctl drill redis-failover`: makes the Redis master fail on purpose, through the agent
 * on its node, while a client writes through HAProxy with acknowledgements, and measures
 * what happened (docs/adr/0014-drills.md):
 *
 *  1. refuses unless every redis and haproxy node is connected, converged and healthy and
 *     no rollout of either runs; finds the master a Sentinel majority names;
 *  2. starts a writer through HAProxy (one SET every few ms, each attributed to the server
 *     that acknowledged it) and subscribes to every Sentinel's events;
 *  3. stops, pauses or kills the master's `redis` container (held so by the agent);
 *  4. waits for the first `+switch-master`, then for the first write the new master
 *     acknowledges through HAProxy;
 *  5. restarts the old master (it comes back and is demoted to a replica by Sentinel) and
 *     waits until both modules are healthy again, the writer still running, so a write
 *     routed back to the old master would be seen;
 *  6. counts the acknowledged writes missing on the master (RPO), deletes the drill's keys.
 *
 * Times are the coordinator's clock; "failure" is when the coordinator sent the action to
 * the agent (a graceful stop takes about a second more: Redis waits for its replicas).
 * Once the failure is caused, the old master is always restarted, whatever else fails.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { DrillEvent, DrillReport, DrillRequest } from '../../proto/types.js';
import { InputError, KbError, errorMessage } from '../../shared/errors/index.js';
import { formatEndpoint, parseEndpoint, type Endpoint, type RedisAuth } from '../../shared/redis/endpoint.js';
import { loadIoredis } from '../../shared/redis/client.js';
import { SentinelLinks, askSentinels, describeTally, parseSwitchMaster, tally, waitForFailoverReadiness } from '../../shared/redis/sentinel.js';
import { AckWriter, countMissing, deleteKeys, measureFailover } from '../../shared/redis/writer.js';
import { requestContainerAction } from '../container-actions.js';
import { haproxyHosts, haproxyModule, redisFrontends, type HaproxySettings } from '../modules/haproxy.js';
import { redisHosts, redisModule, redisTopology, type RedisSettings } from '../modules/redis.js';
import { emptySettings } from '../modules/settings-file.js';
import type { ModuleDefinition, PlanInputs } from '../modules/types.js';
import type { SessionRegistry } from '../sessions.js';
import type { Store } from '../store/types.js';

/** Thrown when the drill refuses to start (nothing was changed). */
export class DrillRefusedError extends KbError {
  override name = 'DrillRefusedError';
}

export const DRILL_DEFAULTS = { mode: 'stop', failoverTimeoutMs: 90_000, healthyDeadlineMs: 120_000, writeIntervalMs: 5 } as const;
const MODES = ['stop', 'pause', 'kill'] as const;
/** Longest wait, before anything is broken, for every Sentinel to know the replicas and each other. */
const SENTINEL_READY_WAIT_MS = 30_000;
/** Sentinel events worth a line in the timeline. */
const SENTINEL_EVENTS = ['+sdown', '-sdown', '+odown', '-odown', '+try-failover', '+elected-leader', '+selected-slave', '+promoted-slave', '+failover-end', '+switch-master', '+convert-to-slave', '-role-change', '+role-change'];

export interface DrillDeps {
  sessions: SessionRegistry;
  store: Store;
  log: Logger;
  inputs: () => PlanInputs;
  /** Static Redis / Sentinel credentials (tests); `auth` wins when given. */
  redisAuth?: RedisAuth;
  sentinelAuth?: RedisAuth;
  /** The current Redis / Sentinel credentials (the coordinator: active redis.env version of its secret store), read when a drill starts. */
  auth?: () => Promise<{ redis?: RedisAuth; sentinel?: RedisAuth }>;
}

/** Validated settings of one module (InputError naming the settings file when they are bad). */
function settingsOf<S>(def: ModuleDefinition<S>, inputs: PlanInputs): S {
  const s = def.settings(inputs.settings[def.name] ?? emptySettings('(no settings file)'), inputs.inventory);
  if (s.problems.length) throw new InputError(s.problems);
  return s.settings;
}

/** Why a module is not healthy on its nodes, or undefined when it is (live reports only). */
export function unhealthy(sessions: SessionRegistry, module: string, nodes: readonly string[]): string | undefined {
  for (const node of nodes) {
    const s = sessions.get(node);
    if (!s) return `${node}: agent not connected`;
    const h = s.health.get(module);
    if (!h) return `${node}: no health report for module ${module} (is it rolled out?)`;
    const bad = h.checks.find((c) => !c.ok);
    if (bad) return `${node}: check ${bad.name}: ${bad.observed}`;
    if (!h.converged) return `${node}: containers do not match revision ${h.revision} yet`;
    if (!h.healthy) return `${node}: unhealthy`;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runRedisFailoverDrill(deps: DrillDeps, req: DrillRequest, emit: (e: DrillEvent) => void): Promise<DrillReport> {
  const mode = req.mode || DRILL_DEFAULTS.mode;
  if (!(MODES as readonly string[]).includes(mode)) throw new DrillRefusedError(`--mode ${mode}: expected one of ${MODES.join(', ')}`);
  const failoverTimeoutMs = req.failoverTimeoutMs || DRILL_DEFAULTS.failoverTimeoutMs;
  const healthyDeadlineMs = req.healthyDeadlineMs || DRILL_DEFAULTS.healthyDeadlineMs;
  const current = deps.auth ? await deps.auth() : undefined;
  const redisAuth = current ? current.redis : deps.redisAuth;
  const sentinelAuth = current ? current.sentinel : deps.sentinelAuth;
  const inputs = deps.inputs();
  const inv = inputs.inventory;
  const redisSettings: RedisSettings = settingsOf(redisModule, inputs);
  const haproxySettings: HaproxySettings = settingsOf(haproxyModule, inputs);
  const topo = redisTopology(inv, redisSettings);
  const redisNodes = redisHosts(inv).map((h) => h.hostname);
  const lbNodes = haproxyHosts(inv).map((h) => h.hostname);
  if (redisNodes.length === 0) throw new DrillRefusedError(`no ROLE=redis node in ${inv.file}`);
  if (lbNodes.length === 0) throw new DrillRefusedError(`no ROLE=lb SUBROLE=internal-haproxy node in ${inv.file}: the drill writes through HAProxy`);
  const frontends = redisFrontends(inv, haproxySettings);
  const via = req.via ? frontends.find((f) => f.node === req.via) : frontends[0];
  if (!via) throw new DrillRefusedError(`--via ${req.via}: not an HAProxy node (${lbNodes.join(', ')})`);
  for (const module of ['redis', 'haproxy']) {
    const active = (await deps.store.listRollouts({ module, state: 'running' }))[0];
    if (active) throw new DrillRefusedError(`a rollout of ${module} is running (${active.id}): wait for it to end`);
  }
  const why = unhealthy(deps.sessions, 'redis', redisNodes) ?? unhealthy(deps.sessions, 'haproxy', lbNodes);
  if (why) throw new DrillRefusedError(`the redis module is not healthy, refusing to break it further: ${why}`);

  const sentinels: Endpoint[] = topo.sentinels.map((s) => ({ host: s.host, port: s.port }));
  const t0 = tally(await askSentinels(sentinels, topo.masterName, { timeoutMs: 1000, auth: sentinelAuth }), sentinels.length);
  if (!t0.agreed) throw new DrillRefusedError(`no Sentinel majority on the master: ${describeTally(t0)}`);
  const oldMaster = t0.agreed;
  const oldNode = topo.redis.find((r) => `${r.host}:${r.port}` === oldMaster)?.node;
  if (!oldNode) throw new DrillRefusedError(`the Sentinels name ${oldMaster} master, which is no redis node of ${inv.file}`);
  // Every Sentinel must be able to fail over before the master is broken: right after a
  // rollout a Sentinel may not know the replicas yet, and the failover would be aborted.
  const want = { replicas: topo.redis.length - 1, sentinels: sentinels.length - 1 };
  const readyFrom = Date.now();
  const { waitedMs: readyWaitMs, notReady } = await waitForFailoverReadiness(sentinels, topo.masterName, want, { timeoutMs: 1000, auth: sentinelAuth, maxWaitMs: SENTINEL_READY_WAIT_MS });
  if (notReady) throw new DrillRefusedError(`the Sentinels could not fail the master over now (after ${SENTINEL_READY_WAIT_MS / 1000} s): ${notReady}`);

  const proxy: Endpoint = { host: via.host, port: via.port };
  const proxyText = formatEndpoint(proxy);
  const started = Date.now();
  const timeline: DrillEvent[] = [];
  const note = (source: string, what: string, atMs = Date.now()) => {
    const e = { atMs, source, what };
    timeline.push(e);
    emit(e);
    deps.log.info({ drill: 'redis-failover', source }, what);
  };
  const report: DrillReport = {
    drill: 'redis-failover', mode, ok: false, error: '', oldMasterNode: oldNode, oldMaster, newMasterNode: '', newMaster: '', proxy: proxyText,
    promotionMs: 0, switchMs: 0, writeOutageMs: 0, writesAcked: 0, writesLost: 0, writesFailed: 0, rejoinMs: 0, healthyAfter: false,
    timeline, startedMs: started, finishedMs: 0, failedAtMs: 0, switchMasterAtMs: 0, firstAckNewAtMs: 0, lastAckOldAtMs: 0, returnedToOld: false,
  };
  if (readyWaitMs >= 500) note('drill', `waited ${readyWaitMs} ms until every Sentinel knew ${want.replicas} replicas in sync and ${want.sentinels} other Sentinels`, readyFrom + readyWaitMs);
  note('drill', `master is ${oldNode} ${oldMaster} (${describeTally(t0)}); writing through HAProxy ${via.node} ${proxyText}; mode ${mode}`);

  let switchAt: { atMs: number; to: string; sentinel: string } | undefined;
  let switchWaiter: (() => void) | undefined;
  await loadIoredis();
  const links = new SentinelLinks(sentinels, { timeoutMs: 1000, auth: sentinelAuth }, SENTINEL_EVENTS, (sentinel, channel, message, atMs) => {
    if (!message.includes(topo.masterName)) return;
    note(`sentinel ${sentinel}`, `${channel} ${message}`, atMs);
    const sw = channel === '+switch-master' ? parseSwitchMaster(message) : undefined;
    if (sw && sw.name === topo.masterName && sw.from === oldMaster && !switchAt) {
      switchAt = { atMs, to: sw.to, sentinel };
      switchWaiter?.();
    }
  });
  const id = randomUUID().slice(0, 8);
  let lastServer = '';
  const writer = new AckWriter({
    proxy, auth: redisAuth, keyPrefix: `kb:drill:${id}:`, intervalMs: req.writeIntervalMs || DRILL_DEFAULTS.writeIntervalMs, timeoutMs: 1000,
    onConnect: (server, atMs) => {
      if (server !== lastServer) note('writer', `connected through ${proxyText} to ${server}`, atMs);
      lastServer = server;
    },
  });
  let failed = false;
  let restored = false;
  const holdMs = failoverTimeoutMs + healthyDeadlineMs + 60_000;
  try {
    writer.start();
    const first = await writer.waitForAck(() => true, 10_000);
    if (!first) throw new DrillRefusedError(`no write through ${proxyText} was acknowledged within 10 s: ${writer.failures.at(-1)?.error ?? 'no answer'}`);
    if (first.server !== oldMaster) throw new DrillRefusedError(`HAProxy ${proxyText} routes to ${first.server}, not to the master ${oldMaster}`);
    await sleep(1000);

    note('drill', `${mode} redis on ${oldNode}`);
    report.failedAtMs = Date.now();
    failed = true;
    const action = await requestContainerAction(deps.sessions, { node: oldNode, module: 'redis', container: 'redis', action: mode as 'stop', holdMs });
    note(oldNode, `redis is ${action.result.state} (${mode} confirmed by the agent ${action.receivedMs - report.failedAtMs} ms after the request)`, action.receivedMs);

    if (!switchAt) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, report.failedAtMs + failoverTimeoutMs - Date.now()));
        switchWaiter = () => { clearTimeout(timer); resolve(); };
      });
    }
    if (!switchAt) throw new KbError(`no +switch-master from any Sentinel within ${failoverTimeoutMs} ms of the failure`);
    const sw = switchAt as { atMs: number; to: string; sentinel: string };
    report.switchMasterAtMs = sw.atMs;
    report.newMaster = sw.to;
    report.newMasterNode = topo.redis.find((r) => `${r.host}:${r.port}` === sw.to)?.node ?? '?';
    report.promotionMs = sw.atMs - report.failedAtMs;
    const firstNew = await writer.waitForAck((a) => a.server === sw.to && a.sentMs >= report.failedAtMs, Math.max(1000, report.failedAtMs + failoverTimeoutMs - Date.now()));
    if (!firstNew) throw new KbError(`HAProxy ${proxyText} did not route a write to the new master ${sw.to} within ${failoverTimeoutMs} ms of the failure`);
    note('writer', `first write acknowledged by the new master ${report.newMasterNode} ${sw.to} through ${proxyText}`, firstNew.ackMs);

    note('drill', `start redis on ${oldNode} again`);
    const back = await requestContainerAction(deps.sessions, { node: oldNode, module: 'redis', container: 'redis', action: 'start' });
    restored = true;
    note(oldNode, `redis is ${back.result.state}`, back.receivedMs);
    const deadline = back.receivedMs + healthyDeadlineMs;
    let lastWhy = '';
    for (;;) {
      const w = unhealthy(deps.sessions, 'redis', redisNodes) ?? unhealthy(deps.sessions, 'haproxy', lbNodes);
      if (!w) break;
      if (w !== lastWhy && w.startsWith(oldNode)) note('drill', `waiting: ${w}`);
      lastWhy = w;
      if (Date.now() > deadline) throw new KbError(`the module is not healthy ${healthyDeadlineMs} ms after the old master restarted: ${w}`);
      await sleep(200);
    }
    report.rejoinMs = Date.now() - back.receivedMs;
    report.healthyAfter = true;
    note('drill', `redis and haproxy healthy again; ${oldNode} is a replica of ${report.newMasterNode} (${report.rejoinMs} ms after its restart)`);
    await sleep(1000);
  } catch (err) {
    if (err instanceof DrillRefusedError && !failed) {
      await writer.stop();
      links.close();
      throw err;
    }
    report.error = errorMessage(err);
    note('drill', `FAILED: ${report.error}`);
  } finally {
    if (failed && !restored) {
      await requestContainerAction(deps.sessions, { node: oldNode, module: 'redis', container: 'redis', action: 'start' })
        .then((r) => note(oldNode, `redis is ${r.result.state} (restored after the failure)`), (e: unknown) => note('drill', `could not restart redis on ${oldNode}: ${errorMessage(e)} (the agent restores it by itself after ${holdMs} ms)`));
    }
    await writer.stop();
    links.close();
  }

  const m = measureFailover(writer.acks, { oldServer: oldMaster, newServer: report.newMaster, failedAtMs: report.failedAtMs, switchAtMs: report.switchMasterAtMs || undefined });
  report.switchMs = m.switchMs ?? 0;
  report.writeOutageMs = m.outageMs ?? 0;
  report.firstAckNewAtMs = m.firstAckNew?.ackMs ?? 0;
  report.lastAckOldAtMs = m.lastAckOld?.ackMs ?? 0;
  report.returnedToOld = m.ackedByOldAfterSwitch > 0;
  report.writesAcked = writer.acks.length;
  report.writesFailed = writer.failures.filter((f) => f.seq > 0).length;
  // RPO: count on whichever master the Sentinels agree on now (the new one, normally).
  const now = tally(await askSentinels(sentinels, topo.masterName, { timeoutMs: 1000, auth: sentinelAuth }), sentinels.length);
  const keys = writer.acks.map((a) => writer.key(a.seq));
  if (now.agreed && keys.length) {
    try {
      const target = parseEndpoint(now.agreed);
      report.writesLost = await countMissing(target, keys, { timeoutMs: 5000, auth: redisAuth });
      note('drill', `${report.writesLost} of ${keys.length} acknowledged writes missing on the master ${now.agreed}`);
      await deleteKeys(target, keys, { timeoutMs: 5000, auth: redisAuth });
    } catch (err) {
      report.error ||= `counting lost writes: ${errorMessage(err)}`;
    }
  } else if (keys.length) {
    report.error ||= `cannot count lost writes: ${describeTally(now)}`;
  }
  if (report.returnedToOld && !report.error) report.error = `${m.ackedByOldAfterSwitch} writes were acknowledged by the old master after the switch (split brain)`;
  report.ok = !report.error && report.healthyAfter;
  report.finishedMs = Date.now();
  return report;
}
