/**
 * How the redis module gives Redis its password without putting it in a plan, in the
 * container's arguments or in its environment (see docs/security.md "Credentials"):
 *
 *  - the agent renders `redis-server.conf` in the credentials directory from a template
 *    (0600, owned by uid 999, the user the official redis image runs redis-server as):
 *        masterauth "<active REDIS_PASSWORD>"
 *        user default on #<sha256 of each accepted REDIS_PASSWORD> ~* &* +@all
 *    The ACL line accepts several passwords at once, which is what lets a rotation keep the
 *    old password valid until every consumer uses the new one; only hashes are in it;
 *  - the file is bind-mounted read-only at /run/secrets/redis-server.conf and given to
 *    redis-server as its configuration file (first argument), before the command-line options;
 *  - the container's environment carries KB_REDIS_AUTH, the versions in use (no value), so a
 *    new version replaces the container (a single-file bind mount keeps the old inode);
 *  - health checks read the password from redis.env on the node.
 *
 * Without a secret store (unit tests of the planner) everything is empty: Redis without a password.
 */
import { CREDENTIALS_DIR } from '../../shared/credentials/index.js';
import type { HealthCheck, SecretFile, VolumeMount } from '../../proto/types.js';
import type { SecretVersions } from './types.js';

/** File name of the rendered Redis auth configuration in the credentials directory. */
export const REDIS_AUTH_FILE = 'redis-server.conf';
/** Where it is mounted in the redis container. */
export const REDIS_AUTH_MOUNT = '/run/secrets/redis-server.conf';
/** uid/gid redis-server runs as in the official image (gosu redis); root in kb's test image, which reads it anyway. */
export const REDIS_UID = 999;

export interface RedisAuth {
  /** Arguments that must come first (the configuration file). */
  argsPrefix: string[];
  volumes: VolumeMount[];
  env: Record<string, string>;
  secretFiles: SecretFile[];
  /** Fields for redis checks: where the password is. */
  check: Pick<HealthCheck, 'credentialsFile' | 'passwordVar'>;
}

export function redisAuthTemplate(v: SecretVersions): string {
  const accepted = [...new Set(v.accepted)].sort((a, b) => a - b);
  return [
    `# Rendered by kb-agent from redis.env (accepted versions ${accepted.join(', ')}; masterauth version ${v.active}). Do not edit.`,
    `masterauth {{redis redis@${v.active} REDIS_PASSWORD}}`,
    `user default on ${accepted.map((n) => `#{{sha256 redis@${n} REDIS_PASSWORD}}`).join(' ')} ~* &* +@all`,
    '',
  ].join('\n');
}

/** The redis container's auth wiring for the secret versions of this plan (empty without a store). */
export function redisAuth(v: SecretVersions | undefined): RedisAuth {
  if (!v) return { argsPrefix: [], volumes: [], env: {}, secretFiles: [], check: {} };
  const accepted = [...new Set(v.accepted)].sort((a, b) => a - b);
  return {
    argsPrefix: [REDIS_AUTH_MOUNT],
    volumes: [{ hostPath: `${CREDENTIALS_DIR}/${REDIS_AUTH_FILE}`, containerPath: REDIS_AUTH_MOUNT, readOnly: true }],
    env: { KB_REDIS_AUTH: `accepts redis@${accepted.join(',redis@')}; masterauth redis@${v.active}` },
    secretFiles: [{ file: REDIS_AUTH_FILE, mode: 0o600, uid: REDIS_UID, gid: REDIS_UID, template: redisAuthTemplate(v) }],
    check: { credentialsFile: 'redis.env', passwordVar: 'REDIS_PASSWORD' },
  };
}
