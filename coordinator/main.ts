#!/usr/bin/env node
/**
 * kb-coordinator entry point: parses options and wires parts together, nothing else.
 */
import { Command, Option } from 'commander';
import { createLogger } from '../shared/log/index.js';
import { InputError, errorMessage } from '../shared/errors/index.js';
import { ConfigError, Coordinator, compileOptions } from './coordinator.js';
import { KB_VERSION } from '../shared/version.js';

const program = new Command('kb-coordinator')
  .description('kb coordinator: computes per-node plans, streams them to agents, runs health-gated rollouts')
  .version(KB_VERSION);

program
  .command('run')
  .description('serve agents and kbctl')
  .requiredOption('--inventory <file>', 'servers.tsv')
  .requiredOption('--versions <file>', 'versions.yaml')
  .option('--settings <file>', 'module settings (YAML)')
  .option('--env <env>', 'servers.tsv ENV rows to manage', 'prod')
  .option('--data-dir <dir>', 'embedded store directory', '/var/lib/kb-coordinator')
  .addOption(new Option('--store <store>', 'state store: "sqlite" (one coordinator, in --data-dir) or etcd://HOST:PORT,HOST:PORT,...[/PREFIX] (several replicas)').env('KB_STORE').default('sqlite'))
  .addOption(new Option('--name <name>', 'this replica\'s name (etcd store)').env('KB_NAME'))
  .addOption(new Option('--advertise <host:port>', 'address other replicas, agents and kbctl reach this one at (default: --listen)').env('KB_ADVERTISE'))
  .addOption(new Option('--lease-ttl <duration>', 'etcd lease of each replica and of the leadership (etcd store): a dead leader is replaced after about this long').default('5s'))
  .option('--listen <host:port>', 'gRPC listen address', '0.0.0.0:7443')
  .option('--plaintext', 'plaintext gRPC (development, loopback only)', false)
  .addOption(new Option('--heartbeat-ms <ms>', 'agent heartbeat interval').default(5000).argParser(Number))
  .addOption(new Option('--health-interval-ms <ms>', 'agent health report interval').default(5000).argParser(Number))
  .action(async (o: {
    inventory: string; versions: string; settings?: string; env: string; dataDir: string; listen: string; plaintext: boolean;
    heartbeatMs: number; healthIntervalMs: number; store: string; name?: string; advertise?: string; leaseTtl: string;
  }) => {
    const log = createLogger({ name: 'coordinator' });
    const config = compileOptions({
      inventoryFile: o.inventory, versionsFile: o.versions, settingsFile: o.settings, env: o.env, dataDir: o.dataDir,
      listen: o.listen, plaintext: o.plaintext, heartbeatIntervalMs: o.heartbeatMs, healthIntervalMs: o.healthIntervalMs,
      store: o.store, name: o.name, advertise: o.advertise, leaseTtlMs: parseDurationMs(o.leaseTtl, '--lease-ttl'),
    });
    const c = new Coordinator(config, log);
    await c.start();
    process.stdout.write(`kb-coordinator listening on ${config.listenHost}:${c.port} (store ${config.store.kind}, name ${config.name})\n`);
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
