#!/usr/bin/env node
/**
 * kb-agent entry point: parses options and wires parts together, nothing else.
 */
import * as grpc from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import os from 'node:os';
import { createLogger } from '../shared/log/index.js';
import { errorMessage } from '../shared/errors/index.js';
import { KB_VERSION } from '../shared/version.js';
import { Agent } from './agent.js';
import { DockerDriver } from './driver/docker.js';

function isLoopbackAddress(addr: string): boolean {
  const host = addr.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const program = new Command('kb-agent').description('kb agent: keeps this node at its desired state').version(KB_VERSION);

program
  .command('run')
  .description('run the agent')
  .addOption(new Option('--node <name>', 'this node\'s inventory HOSTNAME').env('KB_NODE').default(os.hostname()))
  .addOption(new Option('--coordinator <host:port,...>', 'coordinator addresses').env('KB_COORDINATOR').makeOptionMandatory())
  .addOption(new Option('--state-dir <dir>', 'desired state directory').env('KB_STATE_DIR').default('/var/lib/kb-agent'))
  .addOption(new Option('--host-root <dir>', 'prefix of every host path (tests)').env('KB_HOST_ROOT').default('/'))
  .addOption(new Option('--shared-engine', 'several agents share one Docker engine: container names carry the node name').env('KB_SHARED_ENGINE').default(false))
  .addOption(new Option('--docker-host <url>', 'Docker engine').env('DOCKER_HOST'))
  .addOption(new Option('--plaintext', 'plaintext gRPC (development, loopback only)').env('KB_PLAINTEXT').default(false))
  .addOption(new Option('--reconcile-interval-ms <ms>', 'full reconcile interval').default(10_000).argParser(Number))
  .action(async (o: { node: string; coordinator: string; stateDir: string; hostRoot: string; sharedEngine: boolean; dockerHost?: string; plaintext: boolean; reconcileIntervalMs: number }) => {
    const log = createLogger({ name: 'agent' }).child({ node: o.node });
    const coordinators = o.coordinator.split(',').map((s) => s.trim()).filter(Boolean);
    if (!o.plaintext) throw new Error('mTLS enrollment is not configured yet: run with --plaintext against a loopback coordinator (development only)');
    const bad = coordinators.filter((c) => !isLoopbackAddress(c));
    if (bad.length) throw new Error(`--plaintext refuses non-loopback coordinator addresses: ${bad.join(', ')}`);
    const driver = new DockerDriver({ host: o.dockerHost, node: o.node, log });
    const agent = new Agent({
      node: o.node, coordinators, stateDir: o.stateDir, hostRoot: o.hostRoot, sharedEngine: Boolean(o.sharedEngine),
      plaintext: o.plaintext, reconcileIntervalMs: o.reconcileIntervalMs,
    }, driver, log);
    await agent.start(grpc.credentials.createInsecure());
    log.info({ coordinators, version: KB_VERSION }, 'agent started');
    const stop = () => void agent.stop().finally(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kb-agent: ${errorMessage(err)}\n`);
  process.exit(1);
});
