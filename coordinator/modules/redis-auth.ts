/**
 * How the redis and haproxy modules use redis.env without putting a password in a plan, in
 * a container's arguments or in its environment (see docs/security.md "Credentials"):
 *
 *  - Redis: the agent renders `redis-server.conf` in the credentials directory (0600 root)
 *        masterauth "<active REDIS_PASSWORD>"
 *        user default on #<sha256 of each accepted REDIS_PASSWORD> ~* &* +@all
 *    mounted read-only at /run/secrets/redis-server.conf and given to redis-server as its
 *    configuration file (first argument). The ACL line accepts several passwords at once:
 *    that is what lets a rotation keep the old password valid until every consumer uses the
 *    new one, and only hashes are in it.
 *  - Sentinel: the Sentinel template becomes a rendered credentials file too
 *    (`redis-sentinel.conf`, mounted read-only), with the same ACL line for
 *    REDIS_SENTINEL_PASSWORD, `sentinel sentinel-pass` (to talk to the other Sentinels) and
 *    `sentinel auth-pass` (to talk to Redis), at the active version.
 *  - redis.env is mounted read-only into the redis container for its start script, which
 *    asks the Sentinels who the master is (REDISCLI_AUTH, never exported to redis-server),
 *    and into the redis-sentinel container for its start script, which asks the other
 *    Sentinels their ids (REDISCLI_AUTH, never exported to Sentinel).
 *  - The containers' environment carries KB_REDIS_AUTH, the versions in use (no value), so a
 *    new version replaces them (a single-file bind mount keeps the inode it was made with).
 *  - Health checks, the master follower and the drill read both passwords from redis.env
 *    (agent) or the secret store (coordinator).
 *
 * Without a secret store (planner unit tests) everything is empty: Redis without passwords.
 */
import type { HealthCheck, SecretFile, VolumeMount } from '../../proto/types.js';
import { CREDENTIALS_DIR } from '../../shared/credentials/index.js';
import type { SecretVersions } from './types.js';

/** File names of the rendered configurations in the credentials directory. */
export const REDIS_AUTH_FILE = 'redis-server.conf';
export const SENTINEL_AUTH_FILE = 'redis-sentinel.conf';
/** Where files are mounted in the containers. */
export const SECRETS_MOUNT = '/run/secrets';
export const REDIS_AUTH_MOUNT = `${SECRETS_MOUNT}/${REDIS_AUTH_FILE}`;
export const SENTINEL_TEMPLATE_MOUNT = `${SECRETS_MOUNT}/${SENTINEL_AUTH_FILE}`;
export const REDIS_ENV_MOUNT = `${SECRETS_MOUNT}/redis.env`;

/** Where checks and the follower find the passwords on the node. */
export const REDIS_CREDENTIALS_CHECK: Pick<HealthCheck, 'credentialsFile' | 'passwordVar'> = { credentialsFile: 'redis.env', passwordVar: 'REDIS_PASSWORD' };

const ro = (file: string, target: string): VolumeMount => ({ hostPath: `${CREDENTIALS_DIR}/${file}`, containerPath: target, readOnly: true });

function accepted(v: SecretVersions): number[] {
  return [...new Set(v.accepted)].sort((a, b) => a - b);
}

/** `user default on #<hash> ... ~* &* +@all` for variable `variable` of every accepted version. */
function aclLine(v: SecretVersions, variable: string): string {
  return `user default on ${accepted(v).map((n) => `#{{sha256 redis@${n} ${variable}}}`).join(' ')} ~* &* +@all`;
}

/** What the containers show: versions, never values. */
export function authMarker(v: SecretVersions): string {
  return `accepts redis@${accepted(v).join(',redis@')}; uses redis@${v.active}`;
}

export function redisServerTemplate(v: SecretVersions): string {
  return [
    `# Rendered by kb-agent from redis.env (accepted versions ${accepted(v).join(', ')}; masterauth version ${v.active}). Do not edit.`,
    `masterauth {{redis redis@${v.active} REDIS_PASSWORD}}`,
    aclLine(v, 'REDIS_PASSWORD'),
    '',
  ].join('\n');
}

/** Lines appended to the Sentinel template (after `sentinel monitor`, which auth-pass refers to). */
export function sentinelAuthLines(v: SecretVersions, masterName: string): string[] {
  return [
    aclLine(v, 'REDIS_SENTINEL_PASSWORD'),
    `sentinel sentinel-pass {{redis redis@${v.active} REDIS_SENTINEL_PASSWORD}}`,
    `sentinel auth-pass ${masterName} {{redis redis@${v.active} REDIS_PASSWORD}}`,
  ];
}

export interface RedisAuth {
  /** Arguments of redis-server that must come first (the configuration file). */
  argsPrefix: string[];
  redisVolumes: VolumeMount[];
  redisEnv: Record<string, string>;
  /** The rendered files, with `sentinelTemplate` the full Sentinel template (or undefined without a store). */
  secretFiles: (sentinelTemplate: string) => SecretFile[];
  sentinelVolumes: VolumeMount[];
  sentinelEnv: Record<string, string>;
  check: Pick<HealthCheck, 'credentialsFile' | 'passwordVar'>;
}

/** The redis module's auth wiring for the secret versions of this plan (empty without a store). */
export function redisAuth(v: SecretVersions | undefined): RedisAuth {
  if (!v) return { argsPrefix: [], redisVolumes: [], redisEnv: {}, secretFiles: () => [], sentinelVolumes: [], sentinelEnv: {}, check: {} };
  const marker = authMarker(v);
  return {
    argsPrefix: [REDIS_AUTH_MOUNT],
    redisVolumes: [ro(REDIS_AUTH_FILE, REDIS_AUTH_MOUNT), ro('redis.env', REDIS_ENV_MOUNT)],
    redisEnv: { KB_REDIS_AUTH: marker, KB_REDIS_ENV: REDIS_ENV_MOUNT },
    secretFiles: (sentinelTemplate) => [
      { file: REDIS_AUTH_FILE, mode: 0o600, uid: 0, gid: 0, template: redisServerTemplate(v) },
      { file: SENTINEL_AUTH_FILE, mode: 0o600, uid: 0, gid: 0, template: sentinelTemplate },
    ],
    sentinelVolumes: [ro(SENTINEL_AUTH_FILE, SENTINEL_TEMPLATE_MOUNT), ro('redis.env', REDIS_ENV_MOUNT)],
    sentinelEnv: { KB_REDIS_AUTH: marker, KB_SENTINEL_TEMPLATE: SENTINEL_TEMPLATE_MOUNT, KB_REDIS_ENV: REDIS_ENV_MOUNT },
    check: REDIS_CREDENTIALS_CHECK,
  };
}
