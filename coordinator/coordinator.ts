import * as grpc from '@grpc/grpc-js';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { kbV1, SERVER_OPTIONS } from '../proto/index.js';
import { KbError } from '../shared/errors/index.js';
import { RegistryResolver, type ImageResolver } from './images/resolve.js';
import { Inputs, type InputFiles } from './inputs.js';
import type { RolloutEngine } from './rollout/engine.js';
import { HaRuntime } from './ha/runtime.js';
import { SingleRuntime, type CoordinatorRuntime } from './runtime.js';
import { agentSessionHandler } from './server/agent-service.js';
import { controlHandlers } from './server/control-service.js';
import { SessionRegistry } from './sessions.js';
import { parseEtcdUrl, type EtcdTarget } from './store/etcd.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/types.js';

/** Public options of `kb-coordinator run`, with their defaults. */
export interface CoordinatorOptions extends Partial<InputFiles> {
  inventoryFile: string;
  versionsFile: string;
  /** Where the embedded store lives. Default /var/lib/kb-coordinator. */
  dataDir?: string;
  /** gRPC listen address. Default 0.0.0.0:7443. */
  listen?: string;
  /** Plaintext gRPC, for development on loopback only. Default false. */
  plaintext?: boolean;
  /** How often agents send a heartbeat. Default 5000 ms. */
  heartbeatIntervalMs?: number;
  /** How often agents run health checks and report. Default 5000 ms. */
  healthIntervalMs?: number;
  /** Status NotReady after this long without a message. Default 3 x heartbeat. */
  notReadyAfterMs?: number;
  /**
   * Where the state lives: "sqlite" (default: `<dataDir>/kb.db`, one coordinator) or
   * "etcd://HOST:PORT,HOST:PORT,.../PREFIX" (several replicas, high availability).
   */
  store?: string;
  /** This replica's name. Default: the host name. */
  name?: string;
  /** HOST:PORT other replicas, agents and kbctl reach this one at. Default: the listen address (required when it is 0.0.0.0). */
  advertise?: string;
  /** etcd lease TTL of each replica (leadership included). Default 5000 ms; at least 2000. */
  leaseTtlMs?: number;
}

/** The compiled, validated form of CoordinatorOptions. Only this travels inward. */
export interface CoordinatorConfig {
  files: InputFiles;
  dataDir: string;
  listenHost: string;
  listenPort: number;
  plaintext: boolean;
  heartbeatIntervalMs: number;
  healthIntervalMs: number;
  notReadyAfterMs: number;
  store: { kind: 'sqlite'; file: string } | { kind: 'etcd'; target: EtcdTarget };
  name: string;
  advertise: string;
  leaseTtlMs: number;
}

export class ConfigError extends KbError {
  override name = 'ConfigError';
}

export function compileOptions(o: CoordinatorOptions): CoordinatorConfig {
  const listen = o.listen ?? '0.0.0.0:7443';
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new ConfigError(`--listen ${listen}: expected HOST:PORT`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  const plaintext = Boolean(o.plaintext);
  if (!plaintext) {
    throw new ConfigError('no TLS material configured: mTLS arrives with `kb-coordinator init`; until then run with --plaintext on a loopback address (development only)');
  }
  if (plaintext && !isLoopback(host)) {
    throw new ConfigError(`--plaintext refuses non-loopback listen address ${host}: plaintext gRPC is for development on 127.0.0.0/8 only`);
  }
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? 5000;
  const dataDir = o.dataDir ?? '/var/lib/kb-coordinator';
  const storeText = o.store ?? 'sqlite';
  let store: CoordinatorConfig['store'];
  if (storeText === 'sqlite') store = { kind: 'sqlite', file: path.join(dataDir, 'kb.db') };
  else if (storeText.startsWith('etcd://')) {
    try {
      store = { kind: 'etcd', target: parseEtcdUrl(storeText) };
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    if (plaintext) {
      const remote = store.target.hosts.filter((h) => !isLoopback(h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')));
      if (remote.length) throw new ConfigError(`--plaintext refuses non-loopback etcd endpoints ${remote.join(', ')}: plaintext is for development on 127.0.0.0/8 only`);
    }
  } else throw new ConfigError(`--store ${storeText}: expected "sqlite" or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`);
  const advertise = o.advertise ?? (host === '0.0.0.0' || host === '::' ? '' : `${host.includes(':') ? `[${host}]` : host}:${port}`);
  if (store.kind === 'etcd' && (!advertise || /:0$/.test(advertise))) {
    throw new ConfigError(`--advertise HOST:PORT is required with --store etcd when --listen is ${listen}: other replicas, agents and kbctl must be able to reach this one`);
  }
  const leaseTtlMs = o.leaseTtlMs ?? 5000;
  if (!Number.isFinite(leaseTtlMs) || leaseTtlMs < 2000 || leaseTtlMs > 60_000) throw new ConfigError(`--lease-ttl ${leaseTtlMs} ms: must be between 2000 and 60000 ms (etcd's minimum lease is 2 s)`);
  return {
    files: { inventoryFile: o.inventoryFile, versionsFile: o.versionsFile, settingsFile: o.settingsFile, env: o.env ?? 'prod' },
    dataDir,
    listenHost: host,
    listenPort: port,
    plaintext,
    heartbeatIntervalMs,
    healthIntervalMs: o.healthIntervalMs ?? 5000,
    notReadyAfterMs: o.notReadyAfterMs ?? heartbeatIntervalMs * 3,
    store,
    name: o.name ?? os.hostname(),
    advertise: advertise || `${host}:${port}`,
    leaseTtlMs,
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The coordinator process: inputs, store, sessions, rollout engine and the gRPC server.
 * Alone on SQLite (SingleRuntime) or as one replica of several on etcd (HaRuntime).
 *
 *   created ──start()──> serving ──stop()──> stopped
 */
export class Coordinator {
  readonly store: Store;
  readonly sessions = new SessionRegistry();
  readonly runtime: CoordinatorRuntime;
  readonly inputs: Inputs;
  private readonly server = new grpc.Server(SERVER_OPTIONS);
  private readonly resolver: ImageResolver;
  port = 0;

  constructor(readonly config: CoordinatorConfig, private readonly log: Logger, deps: { store?: Store; resolver?: ImageResolver } = {}) {
    this.inputs = new Inputs(config.files);
    this.resolver = deps.resolver ?? new RegistryResolver();
    const runtimeDeps = { identity: { name: config.name, address: config.advertise }, sessions: this.sessions, resolver: this.resolver, inputs: () => this.inputs.current(), log };
    this.runtime = config.store.kind === 'etcd' && !deps.store
      ? new HaRuntime({ target: config.store.target, leaseTtlMs: config.leaseTtlMs, notReadyAfterMs: config.notReadyAfterMs }, runtimeDeps)
      : new SingleRuntime(deps.store ?? new SqliteStore(config.store.kind === 'sqlite' ? config.store.file : path.join(config.dataDir, 'kb.db')), runtimeDeps);
    this.store = this.runtime.store;
    const v1 = kbV1();
    this.server.addService(v1.AgentService.service, {
      Session: agentSessionHandler({
        store: this.store,
        sessions: this.sessions,
        refuse: () => this.runtime.refuseAgents(),
        log,
        inventory: () => this.inputs.lastGood().inventory,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        healthIntervalMs: config.healthIntervalMs,
        peerIdentity: () => undefined,
      }),
    });
    this.server.addService(v1.ControlService.service, controlHandlers({
      store: this.store,
      sessions: this.runtime.directory,
      engine: () => this.runtime.engine(),
      self: `${config.name} ${config.advertise}`,
      status: () => this.runtime.status(),
      drill: (req) => this.runtime.drill(req),
      resolver: this.resolver,
      log,
      inputs: () => this.inputs.current(),
      notReadyAfterMs: config.notReadyAfterMs,
      authorize: () => undefined,
    }));
  }

  async start(): Promise<void> {
    const creds = grpc.ServerCredentials.createInsecure();
    const addr = this.config.listenHost.includes(':') ? `[${this.config.listenHost}]:${this.config.listenPort}` : `${this.config.listenHost}:${this.config.listenPort}`;
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(addr, creds, (err, port) => (err ? reject(new ConfigError(`listen on ${addr}: ${err.message}`, { cause: err })) : resolve(port)));
    });
    this.log.info({ listen: `${this.config.listenHost}:${this.port}`, plaintext: this.config.plaintext, store: this.config.store.kind, replicaName: this.config.name }, 'coordinator serving');
    await this.runtime.start();
  }

  /** The rollout engine, when this coordinator leads (throws NotLeaderError otherwise). */
  get engine(): RolloutEngine {
    return this.runtime.engine();
  }

  async stop(): Promise<void> {
    for (const s of this.sessions.all()) s.close('coordinator stopping');
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await this.runtime.stop();
  }
}
