import type { CheckResult, HealthCheck, ModuleState } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { byOrder } from '../reconcile/names.js';
import type { ManagedContainer } from '../driver/types.js';
import { findContainer } from './container.js';
import { execCheck } from './exec.js';
import { httpCheck } from './http.js';
import { redisFollowerCheck, redisReplicationCheck, redisSentinelCheck, redisSetGetCheck } from './redis-ha.js';
import { redisRoleCheck } from './redis-role.js';
import { tcpCheck } from './tcp.js';
import type { CheckFn, HealthContext, Outcome } from './types.js';

export type { HealthContext, Outcome } from './types.js';
export { judgeReplication, parseReplication, redisPassword } from './redis-role.js';
export { checkPassword } from './password.js';

/** Timeout of a check whose timeoutMs is 0. */
export const DEFAULT_CHECK_TIMEOUT_MS = 2000;

/** Check implementations by kind. */
export const CHECKS: Readonly<Record<string, CheckFn>> = {
  tcp: tcpCheck,
  http: httpCheck,
  exec: execCheck,
  'redis-role': redisRoleCheck,
  'redis-replication': redisReplicationCheck,
  'redis-sentinel': redisSentinelCheck,
  'redis-setget': redisSetGetCheck,
  'redis-follower': redisFollowerCheck,
};

/** Name of the synthetic check that a module container runs. */
export function runningCheckName(container: string): string {
  return `container ${container} running`;
}

/**
 * Runs the health checks of `state` on this node and returns one result per check:
 * first a synthetic `container <name> running` per desired container (in `order`;
 * observed = the engine state, or 'missing'), then the module's own checks in their
 * declared order. The module's checks run concurrently, each bounded by its timeoutMs
 * (default 2000 ms): a check that has not answered by then fails with
 * "no result within N ms". Never throws for a failing check: a failure is a result with
 * ok=false and an `observed` saying what was seen. Throws only if the engine cannot list
 * containers.
 */
export async function runChecks(ctx: HealthContext, state: ModuleState, observed?: readonly ManagedContainer[]): Promise<CheckResult[]> {
  const containers = (observed ?? await ctx.driver.list(ctx.node)).filter((c) => c.module === state.module);
  const running: CheckResult[] = await Promise.all(byOrder(state.containers).map(async (spec) => {
    const c = findContainer(ctx, containers, spec.name);
    if (!c) return { name: runningCheckName(spec.name), ok: false, observed: 'missing' };
    if (c.state === 'running') return { name: runningCheckName(spec.name), ok: true, observed: 'running' };
    // Not running: the container's last log line usually says why (a bad flag, a port in use).
    const last = await Promise.resolve().then(() => ctx.driver.logs(c.id, 5)).then(lastLogLine, () => '');
    return { name: runningCheckName(spec.name), ok: false, observed: last ? `${c.state}; last log: ${last}` : c.state };
  }));
  const own = await Promise.all(state.healthChecks.map(async (check): Promise<CheckResult> => {
    const o = await runOne(check, (fn, timeoutMs) => fn({ ctx, state, check, containers, timeoutMs }));
    if (!o.ok) ctx.log.debug({ node: ctx.node, module: state.module, check: check.name, observed: o.observed }, 'check failed');
    return { name: check.name, ...o };
  }));
  return [...running, ...own];
}

function lastLogLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const line = lines[lines.length - 1] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

async function runOne(check: HealthCheck, call: (fn: CheckFn, timeoutMs: number) => Promise<Outcome>): Promise<Outcome> {
  const fn = CHECKS[check.kind];
  if (!fn) return { ok: false, observed: `unknown check kind "${check.kind}"` };
  const timeoutMs = check.timeoutMs > 0 ? check.timeoutMs : DEFAULT_CHECK_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome>((resolve) => {
    // A little slack so that a check's own, more precise timeout message wins the race.
    timer = setTimeout(() => resolve({ ok: false, observed: `no result within ${timeoutMs} ms` }), timeoutMs + 250);
  });
  try {
    return await Promise.race([call(fn, timeoutMs).catch((err: unknown) => ({ ok: false, observed: errorMessage(err) })), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
