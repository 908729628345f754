#!/usr/bin/env node
/**
 * kb-agent entry point: parses options and wires parts together, nothing else.
 */
// First, before any library allocates: the agent's V8 settings.
import './v8-flags.js';
import * as grpc from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import os from 'node:os';
import { createLogger } from '../shared/log/index.js';
import { errorMessage } from '../shared/errors/index.js';
import { KB_VERSION } from '../shared/version.js';
import { silenceIpServernameWarning } from '../shared/tls/warnings.js';
import { Agent } from './agent.js';
import { DockerDriver } from './driver/docker.js';
import { enroll } from './enroll.js';
import { channelCredentials, checkIdentity } from './identity.js';
import { CertRenewer } from './renew.js';
import { reportMemoryOnSignal } from './memory.js';
import { agentV8Flags } from './v8-flags.js';

function isLoopbackAddress(addr: string): boolean {
  const host = addr.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

silenceIpServernameWarning();
const DEFAULT_TLS_DIR = '/etc/kb-agent';
const program = new Command('kb-agent').description('kb agent: keeps this node at its desired state').version(KB_VERSION);

program
  .command('run')
  .description('run the agent (enrolls first with --token when this node has no certificate)')
  .addOption(new Option('--node <name>', 'this node\'s inventory HOSTNAME').env('KB_NODE').default(os.hostname()))
  .addOption(new Option('--coordinator <host:port,...>', 'coordinator addresses').env('KB_COORDINATOR').makeOptionMandatory())
  .addOption(new Option('--tls-dir <dir>', 'node key, certificate and CA').env('KB_TLS_DIR').default(DEFAULT_TLS_DIR))
  .addOption(new Option('--token <token>', 'join token, used only when this node has no valid certificate').env('KB_TOKEN'))
  .addOption(new Option('--bootstrap <url>', 'https://HOST:PORT of the coordinator\'s bootstrap listener (for --token)').env('KB_BOOTSTRAP'))
  .addOption(new Option('--state-dir <dir>', 'desired state directory').env('KB_STATE_DIR').default('/var/lib/kb-agent'))
  .addOption(new Option('--host-root <dir>', 'prefix of every host path (tests)').env('KB_HOST_ROOT').default('/'))
  .addOption(new Option('--shared-engine', 'several agents share one Docker engine: container names carry the node name').env('KB_SHARED_ENGINE').default(false))
  .addOption(new Option('--docker-host <url>', 'Docker engine').env('DOCKER_HOST'))
  .addOption(new Option('--plaintext', 'plaintext gRPC without certificates (development, loopback only)').env('KB_PLAINTEXT').default(false))
  .addOption(new Option('--reconcile-interval-ms <ms>', 'full reconcile interval').default(10_000).argParser(Number))
  .action(async (o: {
    node: string; coordinator: string; tlsDir: string; token?: string; bootstrap?: string; stateDir: string; hostRoot: string; sharedEngine: boolean;
    dockerHost?: string; plaintext: boolean; reconcileIntervalMs: number;
  }) => {
    const log = createLogger({ name: 'agent' }).child({ node: o.node });
    const coordinators = o.coordinator.split(',').map((s) => s.trim()).filter(Boolean);
    let credentials: grpc.ChannelCredentials | (() => grpc.ChannelCredentials);
    let renewer: CertRenewer | undefined;
    if (o.plaintext) {
      const bad = coordinators.filter((c) => !isLoopbackAddress(c));
      if (bad.length) throw new Error(`--plaintext refuses non-loopback coordinator addresses: ${bad.join(', ')}`);
      credentials = grpc.credentials.createInsecure();
    } else {
      const id = checkIdentity(o.tlsDir, o.node);
      if (!id.ok) {
        if (!o.token || !o.bootstrap) throw new Error(`not enrolled (${id.reason}): run the install command printed by \`kbctl token create\`, or pass --token and --bootstrap`);
        log.info({ bootstrap: o.bootstrap, reason: id.reason }, 'enrolling');
        const e = await enroll({ bootstrapUrl: o.bootstrap, token: o.token, node: o.node, tlsDir: o.tlsDir });
        log.info({ serial: e.serial, notAfter: new Date(e.notAfterMs).toISOString() }, 'enrolled');
      }
      const tlsDir = o.tlsDir;
      credentials = () => channelCredentials(tlsDir);
      renewer = new CertRenewer({ node: o.node, tlsDir, coordinators, log });
    }
    delete process.env.KB_TOKEN;
    const driver = new DockerDriver({ host: o.dockerHost, node: o.node, log });
    const agent = new Agent({
      node: o.node, coordinators, stateDir: o.stateDir, hostRoot: o.hostRoot, sharedEngine: Boolean(o.sharedEngine),
      plaintext: o.plaintext, reconcileIntervalMs: o.reconcileIntervalMs,
    }, driver, log);
    await agent.start(credentials);
    renewer?.start();
    log.info({ coordinators, version: KB_VERSION, mtls: !o.plaintext, v8Flags: agentV8Flags }, 'agent started');
    const stop = () => {
      renewer?.stop();
      void agent.stop().finally(() => process.exit(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    reportMemoryOnSignal((memory) => log.info({ memory }, 'memory'));
  });

program
  .command('enroll')
  .description('enroll this node: check the token\'s CA pin, make a key here, get a certificate (the token is read from KB_TOKEN)')
  .addOption(new Option('--node <name>', 'this node\'s inventory HOSTNAME').env('KB_NODE').default(os.hostname()))
  .addOption(new Option('--tls-dir <dir>', 'where the key, certificate and CA go').env('KB_TLS_DIR').default(DEFAULT_TLS_DIR))
  .addOption(new Option('--bootstrap <url>', 'https://HOST:PORT of the coordinator\'s bootstrap listener').env('KB_BOOTSTRAP'))
  .option('--check', 'only check that --tls-dir holds a valid certificate for --node (exit 0) or not (exit 1); contacts nothing')
  .action(async (o: { node: string; tlsDir: string; bootstrap?: string; check?: boolean }) => {
    const id = checkIdentity(o.tlsDir, o.node);
    if (o.check) {
      if (!id.ok) throw new Error(id.reason);
      process.stdout.write(`${o.node} is enrolled: certificate ${id.identity.info.serial} valid until ${new Date(id.identity.info.notAfterMs).toISOString()}\n`);
      return;
    }
    const token = process.env.KB_TOKEN;
    if (!token) throw new Error('KB_TOKEN is not set: enrollment needs the join token from `kbctl token create` (in the environment, never on the command line)');
    if (!o.bootstrap) throw new Error('--bootstrap https://HOST:PORT is required');
    const e = await enroll({ bootstrapUrl: o.bootstrap, token, node: o.node, tlsDir: o.tlsDir });
    process.stdout.write(`enrolled ${o.node}: certificate ${e.serial} valid until ${new Date(e.notAfterMs).toISOString()}\n`);
  });

program
  .command('remove-containers')
  .description('remove every kb-managed container of this node (used by the uninstaller with --purge)')
  .addOption(new Option('--node <name>', 'this node\'s inventory HOSTNAME').env('KB_NODE').default(os.hostname()))
  .addOption(new Option('--docker-host <url>', 'Docker engine').env('DOCKER_HOST'))
  .action(async (o: { node: string; dockerHost?: string }) => {
    const log = createLogger({ name: 'agent' }).child({ node: o.node });
    const driver = new DockerDriver({ host: o.dockerHost, node: o.node, log });
    const list = await driver.list(o.node);
    for (const c of list) {
      await driver.remove(c.id);
      process.stdout.write(`removed container ${c.dockerName}\n`);
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`kb-agent: ${errorMessage(err)}\n`);
  process.exit(1);
});
