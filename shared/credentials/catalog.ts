/**
 * The credentials catalog: every credentials file of the KeyBuzz design (KEYBUZZ.md
 * "Credentials rules"), its variables with their exact names, how each value is made, and
 * which inventory roles may receive the file. Shared by the coordinator (generation,
 * delivery policy, import), the agent (file names) and `kbctl validate`.
 *
 * Variable names never change: a later move to Vault keeps them.
 */
import type { Server } from '../inventory/index.js';

/** Where credentials live on every host. The agent refuses to write anywhere else. */
export const CREDENTIALS_DIR = '/opt/keybuzz-installer/credentials';

/**
 * How a variable's value is made:
 *  - `password`: 32 random characters [A-Za-z0-9] (~190 bits), safe in URLs, configs and shells;
 *  - `token`: 48 random characters [A-Za-z0-9];
 *  - `user`: a fixed prefix followed by 8 random [a-z0-9] (for root users that must not be guessable);
 *  - `fixed`: the documented default (user names, database names, cluster names).
 */
export type ValueKind = 'password' | 'token' | 'user' | 'fixed';

export interface CredentialVar {
  name: string;
  /** True when the value is a secret (redacted, rotated, searched for in leak tests). */
  secret: boolean;
  kind: ValueKind;
  /** `fixed`: the value; `user`: the prefix. */
  value?: string;
}

export interface RoleSelector { role: string; subrole?: string }

export interface CredentialSpec {
  /** Secret name, also the module it belongs to: "redis". */
  name: string;
  /** File name in CREDENTIALS_DIR: "redis.env". */
  file: string;
  vars: readonly CredentialVar[];
  /** Inventory roles that may receive this file (delivery policy). */
  roles: readonly RoleSelector[];
  description: string;
}

const pw = (name: string): CredentialVar => ({ name, secret: true, kind: 'password' });
const fixed = (name: string, value: string): CredentialVar => ({ name, secret: false, kind: 'fixed', value });

/** Every credentials file kb knows, in the KeyBuzz install order. */
export const CREDENTIALS: readonly CredentialSpec[] = [
  {
    name: 'postgres', file: 'postgres.env',
    description: 'PostgreSQL/Patroni superuser, replication and application users; Patroni REST API password',
    vars: [
      fixed('POSTGRES_SUPERUSER', 'kb_admin'), pw('POSTGRES_SUPERPASS'),
      fixed('POSTGRES_REPL_USER', 'kb_repl'), pw('POSTGRES_REPL_PASS'),
      fixed('POSTGRES_APP_USER', 'kb_app'), pw('POSTGRES_APP_PASS'),
      fixed('POSTGRES_DB', 'keybuzz'), fixed('PATRONI_CLUSTER_NAME', 'keybuzz-pg'), pw('PATRONI_API_PASSWORD'),
    ],
    // PgBouncer on the internal HAProxy hosts authenticates application users.
    roles: [{ role: 'db', subrole: 'postgres' }, { role: 'lb', subrole: 'internal-haproxy' }],
  },
  {
    name: 'redis', file: 'redis.env',
    description: 'Redis and Sentinel passwords, Sentinel master name and quorum',
    vars: [pw('REDIS_PASSWORD'), pw('REDIS_SENTINEL_PASSWORD'), fixed('REDIS_MASTER_NAME', 'kb-redis-master'), fixed('REDIS_SENTINEL_QUORUM', '2')],
    roles: [{ role: 'redis' }, { role: 'lb', subrole: 'internal-haproxy' }],
  },
  {
    name: 'rabbitmq', file: 'rabbitmq.env',
    description: 'RabbitMQ user, password and Erlang cookie',
    vars: [fixed('RABBITMQ_USER', 'kb_rmq'), pw('RABBITMQ_PASSWORD'), { name: 'RABBITMQ_ERLANG_COOKIE', secret: true, kind: 'token' }],
    roles: [{ role: 'queue', subrole: 'rabbitmq' }],
  },
  {
    name: 'minio', file: 'minio.env',
    description: 'MinIO root user and password (the same on every MinIO node), backup bucket',
    vars: [{ name: 'MINIO_ROOT_USER', secret: true, kind: 'user', value: 'kb-minio-' }, pw('MINIO_ROOT_PASSWORD'), fixed('MINIO_BUCKET', 'keybuzz-backups')],
    roles: [{ role: 'storage', subrole: 'minio' }],
  },
  {
    name: 'mariadb', file: 'mariadb.env',
    description: 'MariaDB Galera root and application passwords',
    vars: [pw('MARIADB_ROOT_PASSWORD'), fixed('MARIADB_APP_USER', 'erpnext'), pw('MARIADB_APP_PASSWORD'), fixed('MARIADB_DB', 'erpnext'), fixed('GALERA_CLUSTER_NAME', 'keybuzz-galera')],
    // ProxySQL needs the application user to route it and the monitor credentials.
    roles: [{ role: 'db', subrole: 'mariadb' }, { role: 'db_proxy' }],
  },
  {
    name: 'proxysql', file: 'proxysql.env',
    description: 'ProxySQL admin interface user and password (never admin:admin)',
    vars: [{ name: 'PROXYSQL_ADMIN_USER', secret: false, kind: 'user', value: 'kb-proxysql-' }, pw('PROXYSQL_ADMIN_PASSWORD')],
    roles: [{ role: 'db_proxy' }],
  },
  {
    name: 'k3s', file: 'k3s.env',
    description: 'K3s cluster join token',
    vars: [{ name: 'K3S_TOKEN', secret: true, kind: 'token' }],
    roles: [{ role: 'k3s' }],
  },
];

/** The catalog entry called `name`, or undefined. */
export function findCredential(name: string): CredentialSpec | undefined {
  return CREDENTIALS.find((c) => c.name === name);
}

/** The catalog entry whose file is `file` ("redis.env"), or undefined. */
export function credentialByFile(file: string): CredentialSpec | undefined {
  return CREDENTIALS.find((c) => c.file === file);
}

/** True when `server`'s role may receive `spec`'s file. */
export function mayReceive(spec: CredentialSpec, server: Pick<Server, 'role' | 'subrole'>): boolean {
  return spec.roles.some((r) => r.role === server.role && (r.subrole === undefined || r.subrole === server.subrole));
}

/** Names of every variable marked secret in the catalog (pino redaction paths, leak checks). */
export const SECRET_VAR_NAMES: readonly string[] = CREDENTIALS.flatMap((c) => c.vars.filter((v) => v.secret).map((v) => v.name));
