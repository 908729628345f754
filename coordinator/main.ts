#!/usr/bin/env node
/**
 * kb-coordinator entry point: parses options and wires parts together, nothing else.
 */
import './v8-flags.js';
import { Command, Option } from 'commander';
import path from 'node:path';
import { createLogger } from '../shared/log/index.js';
import { InputError, errorMessage } from '../shared/errors/index.js';
import { parseDuration } from '../shared/duration/index.js';
import { ConfigError, Coordinator, compileOptions } from './coordinator.js';
import { defaultConfigPath } from './kbctl/config.js';
import { initCoordinator } from './pki/init.js';
import { KB_VERSION } from '../shared/version.js';
import { coordinatorV8Flags, coordinatorV8FlagsError } from './v8-flags.js';
import { heapGrowingPercent, heapGrowth } from './memory.js';

const program = new Command('kb-coordinator')
  .description('kb coordinator: computes per-node plans, streams them to agents, runs health-gated rollouts')
  .version(KB_VERSION);

const collect = (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
/** The agent binary shipped next to the coordinator bundle (dist/kb-agent). */
const besideMe = (file: string) => path.join(path.dirname(process.argv[1] ?? '.'), file);

program
  .command('init')
  .description('create the private CA, the serving certificate and the admin credential for kbctl (idempotent: an existing CA is never replaced)')
  .option('--data-dir <dir>', 'coordinator data directory (the PKI goes to <dir>/pki)', '/var/lib/kb-coordinator')
  .option('--listen <host:port>', 'gRPC address, as for `run`', '0.0.0.0:7443')
  .option('--bootstrap-listen <host:port>', 'bootstrap address, as for `run`')
  .option('--advertise <host>', 'name or address agents and kbctl dial (default: listen host, or this hostname)')
  .option('--san <name>', 'extra DNS name or IP for the serving certificate (repeatable, comma-separated)', collect, [])
  .option('--admin-config <file>', 'where to write the kbctl admin credential (mode 0600)', defaultConfigPath())
  .action(async (o: { dataDir: string; listen: string; bootstrapListen?: string; advertise?: string; san: string[]; adminConfig: string }) => {
    const cfg = compileOptions({ inventoryFile: '', versionsFile: '', dataDir: o.dataDir, listen: o.listen, bootstrapListen: o.bootstrapListen, advertise: o.advertise, sans: o.san });
    const port = cfg.listenPort;
    const lines = await initCoordinator({
      dataDir: cfg.dataDir, sans: cfg.sans, adminConfig: o.adminConfig,
      coordinators: [cfg.advertise.includes(':') ? `[${cfg.advertise}]:${port}` : `${cfg.advertise}:${port}`],
    });
    for (const l of lines) process.stdout.write(`${l}\n`);
  });

program
  .command('run')
  .description('serve agents (mTLS) and kbctl (mTLS, admin credential), and the bootstrap listener (installer, enrollment)')
  .requiredOption('--inventory <file>', 'servers.tsv')
  .requiredOption('--versions <file>', 'versions.yaml')
  .option('--settings <file>', 'module settings (YAML)')
  .option('--env <env>', 'servers.tsv ENV rows to manage', 'prod')
  .option('--data-dir <dir>', 'embedded store and PKI directory (replicas on etcd: each has one, with the same pki/ and secrets.key)', '/var/lib/kb-coordinator')
  .addOption(new Option('--store <store>', 'state store: "sqlite" (one coordinator, in --data-dir) or etcd[s]://HOST:PORT,HOST:PORT,...[/PREFIX] (several replicas; etcds:// = TLS)').env('KB_STORE').default('sqlite'))
  .addOption(new Option('--name <name>', 'this replica\'s name (etcd store; default: the host name)').env('KB_NAME'))
  .addOption(new Option('--etcd-ca <file>', 'etcds:// store: CA (PEM) of the etcd members\' certificates').env('KB_ETCD_CA'))
  .addOption(new Option('--etcd-cert <file>', 'etcds:// store: this replica\'s client certificate (PEM) for etcd --client-cert-auth').env('KB_ETCD_CERT'))
  .addOption(new Option('--etcd-key <file>', 'etcds:// store: its private key (PEM)').env('KB_ETCD_KEY'))
  .option('--etcd-insecure', 'accept etcd:// (no TLS) to endpoints off loopback', false)
  .addOption(new Option('--lease-ttl <duration>', 'etcd lease of each replica and of the leadership (etcd store): a dead leader is replaced after about this long').default('5s'))
  .option('--listen <host:port>', 'gRPC listen address (mTLS)', '0.0.0.0:7443')
  .option('--bootstrap-listen <host:port>', 'HTTPS bootstrap listen address (default: gRPC host, port 7444)')
  .addOption(new Option('--advertise <host[:port]>', 'name or address agents, kbctl and other replicas dial; the host is baked into install.sh (default: listen address, or this hostname)').env('KB_ADVERTISE'))
  .option('--san <name>', 'extra DNS name or IP for the serving certificate (repeatable)', collect, [])
  .option('--agent-binary <file>', 'agent binary served to new servers', besideMe('kb-agent'))
  .option('--node-cert-ttl <duration>', 'node certificate lifetime (agents renew after 2/3)', '30d')
  .addOption(new Option('--enroll-burst <n>', 'enrollment attempts per source address at once').default(10).argParser(Number))
  .addOption(new Option('--enroll-per-minute <n>', 'enrollment attempts per source address per minute').default(10).argParser(Number))
  .option('--plaintext', 'plaintext gRPC, no TLS, no bootstrap listener (development, loopback only)', false)
  .addOption(new Option('--heartbeat-ms <ms>', 'agent heartbeat interval').default(5000).argParser(Number))
  .addOption(new Option('--health-interval-ms <ms>', 'agent health report interval').default(5000).argParser(Number))
  .action(async (o: {
    inventory: string; versions: string; settings?: string; env: string; dataDir: string; listen: string; bootstrapListen?: string; advertise?: string;
    san: string[]; agentBinary: string; nodeCertTtl: string; enrollBurst: number; enrollPerMinute: number; plaintext: boolean; heartbeatMs: number; healthIntervalMs: number;
    store: string; name?: string; leaseTtl: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdInsecure: boolean;
  }) => {
    if (coordinatorV8FlagsError) throw new ConfigError(coordinatorV8FlagsError);
    // Wide fan-outs relax the heap growth set at rest (coordinator/memory.ts, ADR 0022).
    heapGrowth.configure(heapGrowingPercent(coordinatorV8Flags));
    const log = createLogger({ name: 'coordinator' });
    const config = compileOptions({
      inventoryFile: o.inventory, versionsFile: o.versions, settingsFile: o.settings, env: o.env, dataDir: o.dataDir,
      listen: o.listen, bootstrapListen: o.bootstrapListen, advertise: o.advertise, sans: o.san, agentBinary: o.agentBinary,
      nodeCertTtlMs: parseDuration(o.nodeCertTtl), enrollBurst: o.enrollBurst, enrollPerMinute: o.enrollPerMinute,
      plaintext: o.plaintext, heartbeatIntervalMs: o.heartbeatMs, healthIntervalMs: o.healthIntervalMs,
      store: o.store, name: o.name, leaseTtlMs: parseDurationMs(o.leaseTtl, '--lease-ttl'),
      etcdCa: o.etcdCa, etcdCert: o.etcdCert, etcdKey: o.etcdKey, etcdInsecure: o.etcdInsecure,
    });
    const c = new Coordinator(config, log);
    await c.start();
    const bootstrap = config.plaintext ? ' (plaintext, development only)' : ` (mTLS); bootstrap ${c.bootstrapUrl()}`;
    process.stdout.write(`kb-coordinator listening on ${config.listenHost}:${c.port}${bootstrap} (store ${config.store.kind}, name ${config.name}${coordinatorV8Flags ? `, V8 ${coordinatorV8Flags}` : ''})\n`);
    const stop = (sig: string) => {
      log.info({ sig }, 'stopping');
      void c.stop().finally(() => process.exit(0));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

/** "5s", "2500ms" or a bare number of milliseconds. */
function parseDurationMs(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`${option} ${text}: expected a duration like 5s or 2500ms`);
  return Math.round(Number(m[1]) * (m[2] === 's' ? 1000 : 1));
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kb-coordinator: ${err instanceof InputError ? `invalid input:\n${err.message}` : errorMessage(err)}\n`);
  process.exit(1);
});
