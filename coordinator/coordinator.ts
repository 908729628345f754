import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { kbV1, SERVER_OPTIONS } from '../proto/index.js';
import type { ModuleState } from '../proto/types.js';
import { KbError, errorMessage } from '../shared/errors/index.js';
import { BootstrapServer } from './bootstrap/server.js';
import { installCommand, renderInstallScript } from './bootstrap/script.js';
import { RegistryResolver, type ImageResolver } from './images/resolve.js';
import { Drills } from './drill/index.js';
import { Inputs, type InputFiles } from './inputs.js';
import { DEFAULT_NODE_CERT_TTL_MS, Enroller } from './pki/enroll.js';
import { loadPki, type Pki } from './pki/pki.js';
import { RateLimiter } from './pki/rate-limit.js';
import { Tokens } from './pki/tokens.js';
import type { RolloutEngine } from './rollout/engine.js';
import { HaRuntime } from './ha/runtime.js';
import { SingleRuntime, type CoordinatorRuntime } from './runtime.js';
import { ensureSecretKey } from './secrets/keyfile.js';
import { RotationDriver } from './secrets/rotation.js';
import { SecretService } from './secrets/service.js';
import { agentSessionHandler, renewHandler } from './server/agent-service.js';
import { Authenticator } from './server/auth.js';
import { secretsHandlers } from './server/secrets-service.js';
import { controlHandlers } from './server/control-service.js';
import { SessionRegistry } from './sessions.js';
import { planAtStart } from './plan-at-start.js';
import { parseEtcdUrl, type EtcdTarget, type EtcdTls } from './store/etcd.js';
import { SqliteStore } from './store/sqlite.js';
import type { Store } from './store/types.js';

/** Public options of `kb-coordinator run`, with their defaults. */
export interface CoordinatorOptions extends Partial<InputFiles> {
  inventoryFile: string;
  versionsFile: string;
  /** Where the embedded store and the PKI (`pki/`, made by `kb-coordinator init`) live. Default /var/lib/kb-coordinator. */
  dataDir?: string;
  /** gRPC listen address (mTLS only). Default 0.0.0.0:7443. */
  listen?: string;
  /** HTTPS bootstrap listener (installer, agent binary, enrollment). Default: the gRPC host, port 7444. */
  bootstrapListen?: string;
  /**
   * Host (or HOST:PORT) agents, kbctl and the other replicas dial (the host is baked into
   * install.sh). Default: the listen host, or the hostname when it is a wildcard. With
   * --store etcd a HOST:PORT others can reach is required when --listen is a wildcard or port 0.
   */
  advertise?: string;
  /** Extra names/addresses for the serving certificate. */
  sans?: string[];
  /** The agent binary served at /kb-agent. Default: `kb-agent` next to the coordinator. */
  agentBinary?: string;
  /** Lifetime of node certificates. Default 30 days; agents renew after two thirds. */
  nodeCertTtlMs?: number;
  /** Enrollment attempts per source address: burst and refill per minute. Default 10 and 10. */
  enrollBurst?: number;
  enrollPerMinute?: number;
  /** Plaintext gRPC and no bootstrap listener, for development on loopback only. Default false. */
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
  /** etcd lease TTL of each replica (leadership included). Default 5000 ms; at least 2000. */
  leaseTtlMs?: number;
  /** etcds://: PEM files of the CA etcd's certificates chain to, and of this replica's client certificate and key. */
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  /** Accept etcd:// (no TLS) to endpoints off loopback. Default false: refused. */
  etcdInsecure?: boolean;
}

/** The compiled, validated form of CoordinatorOptions. Only this travels inward. */
export interface CoordinatorConfig {
  files: InputFiles;
  dataDir: string;
  listenHost: string;
  listenPort: number;
  bootstrapHost: string;
  bootstrapPort: number;
  advertise: string;
  sans: string[];
  agentBinary: string;
  nodeCertTtlMs: number;
  enrollBurst: number;
  enrollPerMinute: number;
  plaintext: boolean;
  heartbeatIntervalMs: number;
  healthIntervalMs: number;
  notReadyAfterMs: number;
  store: { kind: 'sqlite'; file: string } | { kind: 'etcd'; target: EtcdTarget };
  name: string;
  /** HOST:PORT other replicas, agents and kbctl reach this one at (from --advertise, else the listen address). */
  advertiseAddress: string;
  leaseTtlMs: number;
}

export class ConfigError extends KbError {
  override name = 'ConfigError';
}

function hostPort(flag: string, text: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`${flag} ${text}: expected HOST:PORT`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** The TLS material of an etcds:// store, read from the --etcd-* files (errors name the flag and file). */
function etcdTls(o: CoordinatorOptions): EtcdTls {
  if (!o.etcdCa) throw new ConfigError('--store etcds://... needs --etcd-ca FILE (the CA that signed the etcd members\' certificates)');
  if (Boolean(o.etcdCert) !== Boolean(o.etcdKey)) throw new ConfigError('--etcd-cert and --etcd-key go together (this replica\'s client certificate for etcd --client-cert-auth)');
  const read = (flag: string, file: string): Buffer => {
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (err) {
      throw new ConfigError(`${flag} ${file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    if (!data.includes('-----BEGIN')) throw new ConfigError(`${flag} ${file}: not a PEM file`);
    return data;
  };
  return {
    ca: read('--etcd-ca', o.etcdCa),
    ...(o.etcdCert && o.etcdKey ? { cert: read('--etcd-cert', o.etcdCert), key: read('--etcd-key', o.etcdKey) } : {}),
  };
}

export function compileOptions(o: CoordinatorOptions): CoordinatorConfig {
  const { host, port } = hostPort('--listen', o.listen ?? '0.0.0.0:7443');
  const bootstrap = hostPort('--bootstrap-listen', o.bootstrapListen ?? `${host.includes(':') ? `[${host}]` : host}:7444`);
  const plaintext = Boolean(o.plaintext);
  if (plaintext && !isLoopback(host)) {
    throw new ConfigError(`--plaintext refuses non-loopback listen address ${host}: plaintext gRPC is for development on 127.0.0.0/8 only`);
  }
  // --advertise is HOST or HOST:PORT; the host goes into install.sh and the certificate.
  const advertised = o.advertise && /^(\[.*\]|[^:]*):\d+$/.test(o.advertise) ? hostPort('--advertise', o.advertise) : undefined;
  const advertise = advertised?.host || o.advertise || (WILDCARD.has(host) ? os.hostname() : host);
  const nodeCertTtlMs = o.nodeCertTtlMs ?? DEFAULT_NODE_CERT_TTL_MS;
  if (!(nodeCertTtlMs >= 5000)) throw new ConfigError(`--node-cert-ttl must be at least 5s`);
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? 5000;
  const sans = [...new Set([advertise, ...[host, bootstrap.host].filter((h) => !WILDCARD.has(h)), os.hostname(), 'localhost', '127.0.0.1', ...(o.sans ?? [])])];
  const dataDir = o.dataDir ?? '/var/lib/kb-coordinator';
  const storeText = o.store ?? 'sqlite';
  let store: CoordinatorConfig['store'];
  if (storeText === 'sqlite') store = { kind: 'sqlite', file: path.join(dataDir, 'kb.db') };
  else if (/^etcds?:\/\//.test(storeText)) {
    let parsed: ReturnType<typeof parseEtcdUrl>;
    try {
      parsed = parseEtcdUrl(storeText);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
    const { secure, ...target } = parsed;
    store = { kind: 'etcd', target: secure ? { ...target, tls: etcdTls(o) } : target };
    if (!secure) {
      if (o.etcdCa || o.etcdCert || o.etcdKey) throw new ConfigError(`--etcd-ca/--etcd-cert/--etcd-key need an etcds:// store (TLS); --store is ${storeText}`);
      const remote = target.hosts.filter((h) => !isLoopback(h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')));
      if (remote.length && !plaintext && !o.etcdInsecure) {
        throw new ConfigError(`--store ${storeText}: etcd endpoints ${remote.join(', ')} are off loopback and etcd:// is unencrypted and unauthenticated (anyone who reaches etcd could change what agents run): use etcds://... with --etcd-ca, --etcd-cert and --etcd-key, or pass --etcd-insecure to accept it`);
      }
    }
    if (plaintext) {
      const remote = store.target.hosts.filter((h) => !isLoopback(h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')));
      if (remote.length) throw new ConfigError(`--plaintext refuses non-loopback etcd endpoints ${remote.join(', ')}: plaintext is for development on 127.0.0.0/8 only`);
    }
  } else throw new ConfigError(`--store ${storeText}: expected "sqlite", etcd://HOST:PORT[,HOST:PORT...][/PREFIX] or etcds://... (TLS)`);
  const advertiseAddress = advertised ? joinHostPort(advertised.host, advertised.port)
    : o.advertise ? joinHostPort(o.advertise, port)
      : WILDCARD.has(host) ? '' : joinHostPort(host, port);
  if (store.kind === 'etcd' && (!advertiseAddress || /:0$/.test(advertiseAddress))) {
    throw new ConfigError(`--advertise HOST:PORT is required with --store etcd when --listen is ${o.listen ?? '0.0.0.0:7443'}: other replicas, agents and kbctl must be able to reach this one`);
  }
  const leaseTtlMs = o.leaseTtlMs ?? 5000;
  if (!Number.isFinite(leaseTtlMs) || leaseTtlMs < 2000 || leaseTtlMs > 60_000) throw new ConfigError(`--lease-ttl ${leaseTtlMs} ms: must be between 2000 and 60000 ms (etcd's minimum lease is 2 s)`);
  return {
    files: { inventoryFile: o.inventoryFile, versionsFile: o.versionsFile, settingsFile: o.settingsFile, env: o.env ?? 'prod' },
    dataDir,
    listenHost: host,
    listenPort: port,
    bootstrapHost: bootstrap.host,
    bootstrapPort: bootstrap.port,
    advertise,
    sans,
    agentBinary: o.agentBinary ?? '',
    nodeCertTtlMs,
    enrollBurst: o.enrollBurst ?? 10,
    enrollPerMinute: o.enrollPerMinute ?? 10,
    plaintext,
    heartbeatIntervalMs,
    healthIntervalMs: o.healthIntervalMs ?? 5000,
    notReadyAfterMs: o.notReadyAfterMs ?? heartbeatIntervalMs * 3,
    store,
    name: o.name ?? os.hostname(),
    advertiseAddress: advertiseAddress || joinHostPort(host, port),
    leaseTtlMs,
  };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * The coordinator process: inputs, store, sessions, rollout engine, the gRPC server (mTLS:
 * client certificates required, the private CA the only root) and the HTTPS bootstrap
 * listener (installer + enrollment, no client certificate). Alone on SQLite
 * (SingleRuntime) or as one replica of several on etcd (HaRuntime).
 *
 *   created ──start()──> serving ──stop()──> stopped
 */
export class Coordinator {
  readonly store: Store;
  readonly sessions = new SessionRegistry();
  readonly runtime: CoordinatorRuntime;
  readonly inputs: Inputs;
  readonly secrets: SecretService;
  readonly rotation: RotationDriver;
  readonly drills: Drills;
  private readonly server = new grpc.Server(SERVER_OPTIONS);
  private readonly resolver: ImageResolver;
  private readonly auth: Authenticator;
  private pki: Pki | undefined;
  private tokens: Tokens | undefined;
  private enroller: Enroller | undefined;
  private bootstrap: BootstrapServer | undefined;
  private sweep: NodeJS.Timeout | undefined;
  port = 0;
  bootstrapPort = 0;

  constructor(readonly config: CoordinatorConfig, private readonly log: Logger, deps: { store?: Store; resolver?: ImageResolver } = {}) {
    this.inputs = new Inputs(config.files);
    this.resolver = deps.resolver ?? new RegistryResolver();
    // The engine reaches the secret service lazily: the service needs the runtime's store.
    const secrets = {
      versions: () => this.secrets.versions(),
      desiredMessage: (state: ModuleState) => this.secrets.desiredMessage(state),
    };
    const runtimeDeps = {
      identity: { name: config.name, address: config.advertiseAddress }, sessions: this.sessions, resolver: this.resolver, inputs: () => this.inputs.current(), log,
      secrets, afterResume: () => this.rotation.resumeAll(),
    };
    this.runtime = config.store.kind === 'etcd' && !deps.store
      ? new HaRuntime({ target: config.store.target, leaseTtlMs: config.leaseTtlMs, notReadyAfterMs: config.notReadyAfterMs }, runtimeDeps)
      : new SingleRuntime(deps.store ?? new SqliteStore(config.store.kind === 'sqlite' ? config.store.file : path.join(config.dataDir, 'kb.db')), runtimeDeps);
    this.store = this.runtime.store;
    this.auth = new Authenticator(this.store, !config.plaintext);
    // The secret store key (0600 in the data dir): `kb-coordinator init` creates it; a data dir from before then gets it at first start.
    // Replicas on etcd share the secret store, so they must share this key (copy it with pki/).
    this.secrets = new SecretService(this.store, ensureSecretKey(config.dataDir), log);
    this.rotation = new RotationDriver({ store: this.store, secrets: this.secrets, engine: () => this.runtime.engine(), log, inputs: () => this.inputs.current() });
    this.drills = new Drills({ sessions: this.sessions, store: this.store, log, inputs: () => this.inputs.current(), auth: () => this.secrets.redisAuth() });
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
        authenticate: (call) => this.auth.node(call),
        deliver: (state) => this.secrets.desiredMessage(state),
      }),
      Renew: renewHandler({ authenticate: (call) => this.auth.node(call), enroller: () => this.enroller, sessions: this.sessions, log }),
    });
    this.server.addService(v1.ControlService.service, {
      ...controlHandlers({
      store: this.store,
      sessions: this.runtime.directory,
      engine: () => this.runtime.engine(),
      drills: this.drills,
      self: `${config.name} ${config.advertiseAddress}`,
      status: () => this.runtime.status(),
      coordinatorDrill: (req) => this.runtime.drill(req),
      resolver: this.resolver,
      log,
      inputs: () => this.inputs.current(),
      notReadyAfterMs: config.notReadyAfterMs,
      authorize: (call) => this.auth.admin(call),
      secrets: this.secrets,
      tokens: () => this.tokens,
      installCommand: (token) => (this.pki && this.bootstrap
        ? installCommand({ bootstrapUrl: this.bootstrapUrl(), pinnedPubkey: this.pki.serverPin, token })
        : ''),
    }),
      ...secretsHandlers({ secrets: this.secrets, rotation: this.rotation, store: this.store, log, authorize: (call) => this.auth.admin(call) }),
    });
  }

  /** https://ADVERTISE:PORT of the bootstrap listener. */
  bootstrapUrl(): string {
    return `https://${joinHostPort(this.config.advertise, this.bootstrapPort)}`;
  }

  async start(): Promise<void> {
    // On SQLite the secret store is there now; replicas on etcd fill it once they joined (below).
    if (this.config.store.kind === 'sqlite') await this.secrets.ensureAll();
    const c = this.config;
    let creds = grpc.ServerCredentials.createInsecure();
    if (!c.plaintext) {
      this.pki = await loadPki(c.dataDir, c.sans);
      creds = grpc.ServerCredentials.createSsl(
        Buffer.from(this.pki.caPem),
        [{ cert_chain: Buffer.from(this.pki.serverCertPem), private_key: Buffer.from(this.pki.serverKeyPem) }],
        true, // client certificates required, checked against the private CA only
      );
    }
    const addr = joinHostPort(c.listenHost, c.listenPort);
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(addr, creds, (err, port) => (err ? reject(new ConfigError(`listen on ${addr}: ${err.message}`, { cause: err })) : resolve(port)));
    });
    if (this.pki) {
      const pki = this.pki;
      this.tokens = new Tokens(this.store, () => pki.caPin);
      // Agents get every replica's address (this one first): on etcd, every replica registered
      // when install.sh is fetched; alone, just this one.
      const self = joinHostPort(c.advertise, this.port);
      const coordinators = async (): Promise<string[]> => {
        const replicas = await this.runtime.status().then((s) => s.replicas.map((r) => r.address), () => []);
        return [...new Set([self, ...replicas.filter(Boolean)])];
      };
      this.enroller = new Enroller({
        store: this.store, tokens: this.tokens, pki, inventory: () => this.inputs.lastGood().inventory, nodeCertTtlMs: c.nodeCertTtlMs,
        limiter: new RateLimiter(c.enrollBurst, c.enrollPerMinute), log: this.log,
        onReenrolled: (node) => this.sessions.get(node)?.close('node enrolled again: its previous certificate is revoked'),
        isConnected: (node) => Boolean(this.sessions.get(node)),
      });
      let agentSha256 = '';
      if (c.agentBinary && existsSync(c.agentBinary)) agentSha256 = await sha256File(c.agentBinary);
      else this.log.warn({ agentBinary: c.agentBinary }, 'agent binary not found: /kb-agent and install.sh are unavailable until it exists (restart after installing it)');
      // install.sh needs the bootstrap port, known only after listening: render lazily.
      const deps = { pki, enroller: this.enroller, agentBinary: c.agentBinary, agentSha256, coordinators, log: this.log, installScript: async () => '' };
      this.bootstrap = new BootstrapServer(deps);
      this.bootstrapPort = await this.bootstrap.start(c.bootstrapHost, c.bootstrapPort).catch((err: unknown) => {
        throw new ConfigError(`bootstrap listen on ${joinHostPort(c.bootstrapHost, c.bootstrapPort)}: ${(err as Error).message}`, { cause: err });
      });
      deps.installScript = async () => (agentSha256
        ? renderInstallScript({ bootstrapUrl: this.bootstrapUrl(), coordinator: (await coordinators()).join(','), pinnedPubkey: pki.serverPin, agentSha256 })
        : `#!/bin/sh\necho "kb install: this coordinator has no agent binary (${c.agentBinary}); install it next to kb-coordinator and restart" >&2\nexit 1\n`);
      this.sweep = setInterval(() => {
        for (const node of this.sessions.closeExpired()) this.log.warn({ node }, 'session closed: its certificate expired');
      }, 1000);
    }
    this.log.info({
      listen: joinHostPort(c.listenHost, this.port), plaintext: c.plaintext, bootstrap: this.bootstrap ? this.bootstrapUrl() : undefined,
      store: c.store.kind, replicaName: c.name,
    }, 'coordinator serving');
    if (c.plaintext) this.log.warn('plaintext mode: no TLS, no identities, no enrollment (development on loopback only)');
    // Every module planned once from the current inputs (errors to the log now, code compiled
    // before the first rollout); after this turn, so serving starts first.
    setImmediate(() => {
      let inputs;
      try {
        inputs = this.inputs.current();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'inputs do not load: rollouts are refused until they are fixed');
        return;
      }
      void planAtStart(inputs, this.log).catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'planning at start failed'));
    });
    // Resumes running rollouts (then rotations) now, or, on etcd, whenever this replica becomes the leader.
    await this.runtime.start();
    if (c.store.kind === 'etcd') {
      await this.secrets.ensureAll().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'secret store not checked yet (etcd unreachable, or another replica is filling it)'));
    }
  }

  /** The rollout engine, when this coordinator leads (throws NotLeaderError otherwise). */
  get engine(): RolloutEngine {
    return this.runtime.engine();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweep);
    for (const s of this.sessions.all()) s.close('coordinator stopping');
    await this.bootstrap?.stop();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    await this.runtime.stop();
  }
}
