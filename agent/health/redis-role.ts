import type { ContainerSpec, HealthCheck, ModuleState } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { loadIoredis } from '../../shared/redis/client.js';
import { checkPassword } from './password.js';
import type { CheckInput, Outcome } from './types.js';

/** Fields of `INFO replication` this check reads. */
export interface ReplicationInfo {
  role: string;
  connectedSlaves: number;
  masterHost: string;
  masterPort: string;
  masterLinkStatus: string;
}

/** Parses the text of `INFO replication`. Missing fields come back empty / 0. */
export function parseReplication(text: string): ReplicationInfo {
  const kv = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) kv.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  const n = Number.parseInt(kv.get('connected_slaves') ?? '0', 10);
  return {
    role: kv.get('role') ?? '',
    connectedSlaves: Number.isFinite(n) ? n : 0,
    masterHost: kv.get('master_host') ?? '',
    masterPort: kv.get('master_port') ?? '',
    masterLinkStatus: kv.get('master_link_status') ?? '',
  };
}

/**
 * Judges replication info against a check: 'master' wants role master with at least
 * `minReplicas` connected replicas; 'slave' (or 'replica') wants role slave with the master
 * link up. observed names what was seen, e.g. `role:master connected_slaves:1 (want >= 2)`,
 * `role:slave master_link_status:down master 127.0.1.1:6379`.
 */
export function judgeReplication(info: ReplicationInfo, check: Pick<HealthCheck, 'expectRole' | 'minReplicas'>): Outcome {
  const want = check.expectRole === 'replica' ? 'slave' : check.expectRole;
  const seen = info.role === 'master'
    ? `role:master connected_slaves:${info.connectedSlaves}`
    : info.role === 'slave'
      ? `role:slave master_link_status:${info.masterLinkStatus || '?'} master ${info.masterHost}:${info.masterPort}`
      : `role:${info.role || '?'}`;
  if (want !== 'master' && want !== 'slave') return { ok: false, observed: `${seen} (unknown expected role "${check.expectRole}")` };
  if (info.role !== want) return { ok: false, observed: `${seen} (want role:${want})` };
  if (want === 'master') {
    const ok = info.connectedSlaves >= check.minReplicas;
    return { ok, observed: ok ? seen : `${seen} (want >= ${check.minReplicas})` };
  }
  const ok = info.masterLinkStatus === 'up';
  return { ok, observed: ok ? seen : `${seen} (want master_link_status:up)` };
}

/**
 * Password for a redis-role check: env REDIS_PASSWORD, else the value after `--requirepass`
 * in the args, of the module container the check names (`container`), or, when it names
 * none, of the first container of the state that has one. Undefined when there is none.
 */
export function redisPassword(state: ModuleState, check: Pick<HealthCheck, 'container'>): string | undefined {
  const fromSpec = (c: ContainerSpec): string | undefined => {
    if (c.env.REDIS_PASSWORD) return c.env.REDIS_PASSWORD;
    const i = c.args.indexOf('--requirepass');
    const v = i >= 0 ? c.args[i + 1] : undefined;
    return v && !v.startsWith('--') ? v : undefined;
  };
  if (check.container) {
    const c = state.containers.find((x) => x.name === check.container);
    return c ? fromSpec(c) : undefined;
  }
  for (const c of state.containers) {
    const p = fromSpec(c);
    if (p) return p;
  }
  return undefined;
}

/**
 * `redis-role`: connects to host:port (one attempt, no retries, connect and command timeout
 * = the check's timeout), reads `INFO replication` and judges it (see judgeReplication).
 * The password is variable `passwordVar` of credentials file `credentialsFile` when the check
 * names one, else what redisPassword finds. The password never appears in `observed`.
 */
export async function redisRoleCheck({ ctx, state, check, timeoutMs }: CheckInput): Promise<Outcome> {
  const host = check.host || '127.0.0.1';
  const port = check.port || 6379;
  const { password, error } = await checkPassword(ctx, state, check);
  if (error) return { ok: false, observed: error };
  const { Redis } = await loadIoredis();
  const client = new Redis({
    host, port, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false,
    ...(password ? { password } : {}),
  });
  // ioredis rejects with a generic "Connection is closed." after a failed connect; the
  // socket error it emitted first (ECONNREFUSED, ETIMEDOUT, ...) is what the operator needs.
  let socketError: Error | undefined;
  client.on('error', (err: Error) => { socketError ??= err; });
  try {
    await client.connect();
    const text = await client.info('replication');
    return judgeReplication(parseReplication(text), check);
  } catch (err) {
    const why = socketError && /connection is closed/i.test(errorMessage(err)) ? errorMessage(socketError) : errorMessage(err);
    return { ok: false, observed: `redis ${host}:${port}: ${why}` };
  } finally {
    client.disconnect();
  }
}
