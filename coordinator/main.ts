#!/usr/bin/env node
/**
 * kb-coordinator entry point: parses options and wires parts together, nothing else.
 */
import { Command, Option } from 'commander';
import { createLogger } from '../shared/log/index.js';
import { InputError, errorMessage } from '../shared/errors/index.js';
import { Coordinator, compileOptions } from './coordinator.js';
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
  .option('--listen <host:port>', 'gRPC listen address', '0.0.0.0:7443')
  .option('--plaintext', 'plaintext gRPC (development, loopback only)', false)
  .addOption(new Option('--heartbeat-ms <ms>', 'agent heartbeat interval').default(5000).argParser(Number))
  .addOption(new Option('--health-interval-ms <ms>', 'agent health report interval').default(5000).argParser(Number))
  .action(async (o: { inventory: string; versions: string; settings?: string; env: string; dataDir: string; listen: string; plaintext: boolean; heartbeatMs: number; healthIntervalMs: number }) => {
    const log = createLogger({ name: 'coordinator' });
    const config = compileOptions({
      inventoryFile: o.inventory, versionsFile: o.versions, settingsFile: o.settings, env: o.env, dataDir: o.dataDir,
      listen: o.listen, plaintext: o.plaintext, heartbeatIntervalMs: o.heartbeatMs, healthIntervalMs: o.healthIntervalMs,
    });
    const c = new Coordinator(config, log);
    await c.start();
    process.stdout.write(`kb-coordinator listening on ${config.listenHost}:${c.port}\n`);
    const stop = (sig: string) => {
      log.info({ sig }, 'stopping');
      void c.stop().finally(() => process.exit(0));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kb-coordinator: ${err instanceof InputError ? `invalid input:\n${err.message}` : errorMessage(err)}\n`);
  process.exit(1);
});
