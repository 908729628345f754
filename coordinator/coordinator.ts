import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import type { Logger } from 'pino';
import { kbV1, SERVER_OPTIONS } from '../proto/index.js';
import { KbError } from '../shared/errors/index.js';
import { RegistryResolver, type ImageResolver } from './images/resolve.js';
import { Inputs, type InputFiles } from './inputs.js';
import { RolloutEngine } from './rollout/engine.js';
import { ensureSecretKey } from './secrets/keyfile.js';
import { RotationDriver } from './secrets/rotation.js';
import { SecretService } from './secrets/service.js';
import { secretsHandlers } from './server/secrets-service.js';
import { agentSessionHandler } from './server/agent-service.js';
import { controlHandlers } from './server/control-service.js';
import { SessionRegistry } from './sessions.js';
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
  return {
    files: { inventoryFile: o.inventoryFile, versionsFile: o.versionsFile, settingsFile: o.settingsFile, env: o.env ?? 'prod' },
    dataDir: o.dataDir ?? '/var/lib/kb-coordinator',
    listenHost: host,
    listenPort: port,
    plaintext,
    heartbeatIntervalMs,
    healthIntervalMs: o.healthIntervalMs ?? 5000,
    notReadyAfterMs: o.notReadyAfterMs ?? heartbeatIntervalMs * 3,
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The coordinator process: inputs, store, sessions, rollout engine and the gRPC server.
 *
 *   created ──start()──> serving ──stop()──> stopped
 */
export class Coordinator {
  readonly store: Store;
  readonly sessions = new SessionRegistry();
  readonly engine: RolloutEngine;
  readonly inputs: Inputs;
  readonly secrets: SecretService;
  readonly rotation: RotationDriver;
  private readonly server = new grpc.Server(SERVER_OPTIONS);
  private readonly resolver: ImageResolver;
  port = 0;

  constructor(readonly config: CoordinatorConfig, private readonly log: Logger, deps: { store?: Store; resolver?: ImageResolver } = {}) {
    this.inputs = new Inputs(config.files);
    this.store = deps.store ?? new SqliteStore(path.join(config.dataDir, 'kb.db'));
    this.resolver = deps.resolver ?? new RegistryResolver();
    // The secret store key (0600 in the data dir). `kb-coordinator init` will create it; until then, the first start does.
    this.secrets = new SecretService(this.store, ensureSecretKey(config.dataDir), log);
    this.engine = new RolloutEngine({ store: this.store, sessions: this.sessions, resolver: this.resolver, log, inputs: () => this.inputs.current(), secrets: this.secrets });
    this.rotation = new RotationDriver({ store: this.store, secrets: this.secrets, engine: this.engine, log, inputs: () => this.inputs.current() });
    const v1 = kbV1();
    this.server.addService(v1.AgentService.service, {
      Session: agentSessionHandler({
        store: this.store,
        sessions: this.sessions,
        log,
        inventory: () => this.inputs.lastGood().inventory,
        heartbeatIntervalMs: config.heartbeatIntervalMs,
        healthIntervalMs: config.healthIntervalMs,
        peerIdentity: () => undefined,
        deliver: (state) => this.secrets.desiredMessage(state),
      }),
    });
    this.server.addService(v1.ControlService.service, {
      ...controlHandlers({
      store: this.store,
      sessions: this.sessions,
      engine: this.engine,
      resolver: this.resolver,
      log,
      inputs: () => this.inputs.current(),
      notReadyAfterMs: config.notReadyAfterMs,
      authorize: () => undefined,
      secrets: this.secrets,
    }),
      ...secretsHandlers({ secrets: this.secrets, rotation: this.rotation, store: this.store, log, authorize: () => undefined }),
    });
  }

  async start(): Promise<void> {
    await this.secrets.ensureAll();
    const creds = grpc.ServerCredentials.createInsecure();
    const addr = this.config.listenHost.includes(':') ? `[${this.config.listenHost}]:${this.config.listenPort}` : `${this.config.listenHost}:${this.config.listenPort}`;
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(addr, creds, (err, port) => (err ? reject(new ConfigError(`listen on ${addr}: ${err.message}`, { cause: err })) : resolve(port)));
    });
    this.log.info({ listen: `${this.config.listenHost}:${this.port}`, plaintext: this.config.plaintext }, 'coordinator serving');
    await this.engine.resumeAll();
    await this.rotation.resumeAll();
  }

  async stop(): Promise<void> {
    for (const s of this.sessions.all()) s.close('coordinator stopping');
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await this.store.close();
  }
}
