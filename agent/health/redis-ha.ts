/**
 * Health checks of Redis HA (see coordinator/modules/redis.ts and haproxy.ts):
 *  - `redis-replication`: the node's role matches what its Sentinel says;
 *  - `redis-sentinel`: every reachable Sentinel names the same master and the local one knows them;
 *  - `redis-setget`: a SET then GET through a proxy works (and on which master it landed);
 *  - `redis-follower`: the agent's master follower (agent/follower) has HAProxy on the agreed master.
 * Passwords come from the credentials file the check names (`credentialsFile`: REDIS_PASSWORD
 * and REDIS_SENTINEL_PASSWORD of redis.env), else from the module's container env (see
 * redisPassword); none appears in `observed`.
 */
import { randomBytes } from 'node:crypto';
import type { ModuleState } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { formatEndpoint, parseEndpoint, type Endpoint, type RedisAuth } from '../../shared/redis/endpoint.js';
import { withRedis } from '../../shared/redis/oneshot.js';
import { askSentinel, askSentinels, sentinelMaster } from '../../shared/redis/sentinel.js';
import { judgeReplication, parseReplication, redisPassword } from './redis-role.js';
import type { CheckInput, Outcome } from './types.js';

/** Sentinel password from the module's container env REDIS_SENTINEL_PASSWORD (states without credentials files). */
export function sentinelAuth(state: ModuleState): RedisAuth | undefined {
  const p = state.containers.map((c) => c.env.REDIS_SENTINEL_PASSWORD).find(Boolean);
  return p ? { password: p } : undefined;
}

/**
 * The Redis and Sentinel credentials of a check: from the credentials file it names (read
 * now, so a rotated password is used at once), else from the state. Throws (a message
 * without any value) when the check names a file that cannot be read.
 */
export async function checkAuths(input: Pick<CheckInput, 'ctx' | 'state' | 'check'>): Promise<{ redis?: RedisAuth; sentinel?: RedisAuth }> {
  const file = input.check.credentialsFile;
  if (!file) {
    const p = redisPassword(input.state, input.check);
    return { redis: p ? { password: p } : undefined, sentinel: sentinelAuth(input.state) };
  }
  const vars = await input.ctx.credentials?.variables(file);
  if (!vars) throw new Error(`credentials ${file} missing`);
  const redis = vars.get(input.check.passwordVar || 'REDIS_PASSWORD');
  const sentinel = vars.get('REDIS_SENTINEL_PASSWORD');
  return { redis: redis ? { password: redis } : undefined, sentinel: sentinel ? { password: sentinel } : undefined };
}

function target(input: CheckInput, defaultPort: number): Endpoint {
  return { host: input.check.host || '127.0.0.1', port: input.check.port || defaultPort };
}

/**
 * `redis-replication`: asks the local Sentinel (`sentinels[0]`) which master it knows for
 * `masterName`, and the Redis at host:port for `INFO replication`. If the Sentinel names
 * this Redis, it must be `role:master` (with at least minReplicas replicas); otherwise it
 * must be a replica of exactly that master with the link up. So an old master that came
 * back still saying role:master is unhealthy until Sentinel has demoted it.
 */
export async function redisReplicationCheck(input: CheckInput): Promise<Outcome> {
  const { check, timeoutMs } = input;
  const me = target(input, 6379);
  const sentinelText = check.sentinels[0];
  if (!sentinelText) return { ok: false, observed: 'no Sentinel configured for this check' };
  const sentinel = parseEndpoint(sentinelText);
  let auths: Awaited<ReturnType<typeof checkAuths>>;
  try {
    auths = await checkAuths(input);
  } catch (err) {
    return { ok: false, observed: errorMessage(err) };
  }
  const [answer, info] = await Promise.all([
    askSentinel(sentinel, check.masterName, { timeoutMs, auth: auths.sentinel }),
    withRedis(me, { timeoutMs, auth: auths.redis }, (r) => r.info('replication')).then(parseReplication, (err: unknown) => new Error(errorMessage(err))),
  ]);
  if (info instanceof Error) return { ok: false, observed: `redis ${info.message}` };
  if (!answer.master) return { ok: false, observed: `sentinel ${answer.sentinel}: ${answer.error ?? 'no answer'}` };
  const self = formatEndpoint(me);
  if (answer.master === self) {
    const o = judgeReplication(info, { expectRole: 'master', minReplicas: check.minReplicas });
    return { ok: o.ok, observed: `${o.observed} (sentinel ${answer.sentinel} names this node master)` };
  }
  if (info.role === 'master') {
    return { ok: false, observed: `role:master, but sentinel ${answer.sentinel} names ${answer.master} master (waiting for Sentinel to demote it)` };
  }
  const o = judgeReplication(info, { expectRole: 'slave', minReplicas: 0 });
  const following = `${info.masterHost}:${info.masterPort}`;
  if (following !== answer.master) {
    return { ok: false, observed: `${o.observed}, but sentinel ${answer.sentinel} names ${answer.master} master` };
  }
  return o;
}

/**
 * `redis-sentinel`: asks every Sentinel of `sentinels` for the master of `masterName`.
 * Healthy when the local Sentinel (host:port) answers, every Sentinel that answers names
 * the same master, the local Sentinel sees that master up (flags exactly "master": no
 * s_down, o_down or failover in progress), and it knows at least
 * min(minSentinels, answering) Sentinels itself included, and no more than `sentinels` lists
 * (a Sentinel outside the inventory, such as a removed node's still running, counts in
 * failover majorities: Sentinel forgets one only on SENTINEL RESET). Sentinels of nodes not installed
 * yet (first rollout) do not answer and so do not fail the check; a Sentinel that answers
 * something else does.
 */
export async function redisSentinelCheck(input: CheckInput): Promise<Outcome> {
  const { check, timeoutMs } = input;
  const local = target(input, 26379);
  const localText = formatEndpoint(local);
  const all = check.sentinels.map(parseEndpoint);
  if (!all.some((e) => formatEndpoint(e) === localText)) all.push(local);
  let auth: RedisAuth | undefined;
  try {
    auth = (await checkAuths(input)).sentinel;
  } catch (err) {
    return { ok: false, observed: errorMessage(err) };
  }
  const answers = await askSentinels(all, check.masterName, { timeoutMs, auth });
  const mine = answers.find((a) => a.sentinel === localText)!;
  if (!mine.master) return { ok: false, observed: `local sentinel ${localText}: ${mine.error ?? 'no answer'}` };
  const answering = answers.filter((a) => a.master);
  const silent = answers.filter((a) => !a.master).map((a) => a.sentinel);
  const disagree = answering.filter((a) => a.master !== mine.master);
  if (disagree.length) {
    return { ok: false, observed: `sentinels disagree: ${answering.map((a) => `${a.sentinel} says ${a.master}`).join('; ')}` };
  }
  let record: Record<string, string>;
  try {
    record = await sentinelMaster(local, check.masterName, { timeoutMs, auth });
  } catch (err) {
    return { ok: false, observed: `local sentinel SENTINEL MASTER: ${errorMessage(err)}` };
  }
  const known = Number(record['num-other-sentinels'] ?? 0) + 1;
  const need = Math.min(check.minSentinels || all.length, answering.length);
  const silentText = silent.length ? `; silent: ${silent.join(', ')}` : '';
  const seen = `${answering.length}/${all.length} sentinels name ${mine.master}; local knows ${known} sentinels${silentText}`;
  if (record.flags !== 'master') return { ok: false, observed: `${seen}; master flags ${record.flags ?? '?'}` };
  if (known < need) return { ok: false, observed: `${seen} (want >= ${need})` };
  if (known > all.length) {
    return { ok: false, observed: `${seen}, more than the ${all.length} of the inventory: the others count in failover majorities (SENTINEL SENTINELS ${check.masterName} lists them; SENTINEL RESET ${check.masterName} here, once they are stopped, forgets them)` };
  }
  return { ok: true, observed: seen };
}

/**
 * `redis-setget`: SET a random value under `kb:health:<node>` (expires after 60 s) through
 * host:port, GET it back, and report which server answered (`CLIENT INFO` laddr).
 */
export async function redisSetGetCheck(input: CheckInput): Promise<Outcome> {
  const proxy = target(input, 6379);
  const key = `kb:health:${input.ctx.node}`;
  const value = randomBytes(8).toString('hex');
  try {
    const { redis } = await checkAuths(input);
    return await withRedis(proxy, { timeoutMs: input.timeoutMs, auth: redis }, async (r) => {
      const laddr = /(?:^|\s)laddr=(\S+)/.exec(String(await r.call('CLIENT', 'INFO')))?.[1] ?? '?';
      await r.set(key, value, 'PX', 60_000);
      const back = await r.get(key);
      return back === value
        ? { ok: true, observed: `SET/GET through ${formatEndpoint(proxy)} ok (master ${laddr})` }
        : { ok: false, observed: `GET through ${formatEndpoint(proxy)} returned ${back === null ? 'nothing' : 'another value'} (server ${laddr})` };
    });
  } catch (err) {
    return { ok: false, observed: `SET/GET through ${errorMessage(err)}` };
  }
}

/** `redis-follower`: the state of this module's master follower, as the follower reports it. */
export async function redisFollowerCheck({ ctx, state }: CheckInput): Promise<Outcome> {
  return ctx.follower?.(state.module) ?? { ok: false, observed: 'no master follower runs for this module' };
}
