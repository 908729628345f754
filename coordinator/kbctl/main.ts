/**
 * kbctl: the operator's CLI. Parses options and calls the coordinator's ControlService
 * (or, for `validate` and `versions`, reads local files). Output goes through printer.ts.
 */
import { Command, Option } from 'commander';
import { InputError, errorMessage, formatProblem } from '../../shared/errors/index.js';
import { validateFiles } from '../../shared/validate/index.js';
import { loadVersions, shellExports } from '../../shared/versions/index.js';
import { KB_VERSION } from '../../shared/version.js';
import type { CoordinatorStatusResponse, DrillReport, RolloutEvent, RolloutInfo, RolloutUpdate } from '../../proto/types.js';
import { ControlClient, ControlError } from './client.js';
import { readKbConfig, resolveConfigPath } from './config.js';
import { coordinatorFailoverDrill, formatFailoverReport } from './drill.js';
import { ago, bytes, clock, parseDuration, stdio, table, type Printer } from './printer.js';
import { registerSecretsCommands } from './secrets.js';

/** Exit codes: 0 ok, 1 the operation failed (rollout failed, validation problems), 2 usage or connection error. */
export const EXIT = { ok: 0, failed: 1, error: 2 } as const;

interface GlobalOpts { config?: string; coordinator?: string; plaintext: boolean; output: 'table' | 'json' }

export function buildProgram(p: Printer, setExit: (code: number) => void): Command {
  const program = new Command('kbctl')
    .description('kb operator CLI')
    .version(KB_VERSION)
    .addOption(new Option('--config <file>', 'admin credential written by `kb-coordinator init` (default ~/.kb/config)').env('KB_CONFIG'))
    .addOption(new Option('--coordinator <host:port,...>', 'coordinator address, or every replica\'s, comma-separated: the first that answers serves (default: the credential file\'s list)').env('KB_COORDINATOR'))
    .addOption(new Option('--plaintext', 'plaintext gRPC without credentials (development coordinator on loopback only)').env('KB_PLAINTEXT').default(false))
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .showHelpAfterError();

  const globals = (): GlobalOpts => program.opts<GlobalOpts>();
  const client = () => {
    const g = globals();
    if (g.plaintext) return new ControlClient({ address: g.coordinator ?? '127.0.0.1:7443', plaintext: true });
    const cfg = readKbConfig(resolveConfigPath(g.config));
    return new ControlClient({ address: g.coordinator ?? cfg.coordinators.join(','), plaintext: false, tls: { ca: cfg.ca, certificate: cfg.certificate, key: cfg.key } });
  };

  program
    .command('nodes')
    .description('list nodes: NAME ROLE IP STATUS AGENT MODULES CPU MEM DISK LAST-SEEN COORDINATOR')
    .action(async () => {
      const c = client();
      try {
        const res = await c.listNodes();
        if (globals().output === 'json') return p.out(JSON.stringify(res.nodes, null, 2));
        p.out(table(
          ['NAME', 'ROLE', 'IP', 'STATUS', 'AGENT', 'MODULES', 'CPU', 'MEM', 'DISK', 'LAST-SEEN', 'COORDINATOR'],
          res.nodes.map((n) => [
            n.name,
            n.subrole ? `${n.role}/${n.subrole}` : n.role,
            n.ip,
            n.status,
            n.agentVersion || '-',
            n.modules.map((m) => `${m.module}@${m.revision}:${m.healthy ? 'healthy' : 'unhealthy'}`).join(',') || '-',
            n.facts ? `${n.facts.cpuPercent.toFixed(0)}%` : '-',
            n.facts ? `${bytes(n.facts.memUsedBytes)}/${bytes(n.facts.memTotalBytes)}` : '-',
            n.facts ? `${bytes(n.facts.diskUsedBytes)}/${bytes(n.facts.diskTotalBytes)}` : '-',
            ago(n.lastSeenMs),
            n.coordinator ? n.coordinator.split(' ')[0]! : '-',
          ]),
        ));
      } finally {
        c.close();
      }
    });

  program
    .command('health [module]')
    .description('every health check of each node, with what it observed (a stored report, marked stale, when the agent is not connected)')
    .action(async (module: string | undefined) => {
      const c = client();
      try {
        const res = await c.health({ module: module ?? '' });
        if (globals().output === 'json') return p.out(JSON.stringify(res.nodes, null, 2));
        if (!res.nodes.length) return p.out(module ? `no health report for module ${module} yet` : 'no health report yet');
        const rows: string[][] = [];
        for (const n of res.nodes) {
          for (const m of n.modules) {
            for (const ch of m.checks) {
              rows.push([n.node, `${m.module}@${m.revision}`, ch.name, ch.ok ? 'ok' : 'FAIL', `${n.connected ? '' : '(stale) '}${ch.observed}`]);
            }
          }
        }
        p.out(table(['NODE', 'MODULE', 'CHECK', 'OK', 'OBSERVED'], rows));
        if (res.nodes.some((n) => n.modules.some((m) => !m.healthy || !m.converged))) setExit(EXIT.failed);
      } finally {
        c.close();
      }
    });

  program
    .command('plan <module>')
    .description('show what a rollout of <module> would change on each node')
    .option('--node <name...>', 'only these nodes')
    .action(async (module: string, o: { node?: string[] }) => {
      const c = client();
      try {
        const res = await c.plan({ module, nodes: o.node ?? [] });
        if (globals().output === 'json') return p.out(JSON.stringify(res, null, 2));
        p.out(`module ${res.module}; images: ${Object.entries(res.images).map(([k, v]) => `${k}=${v}`).join(', ')}`);
        for (const n of res.nodes) {
          p.out(`${n.node}: ${n.action}${n.connected ? '' : ' (agent not connected)'}${n.currentRevision ? ` (now revision ${n.currentRevision})` : ''}`);
          for (const ch of n.containers) {
            const detail = ch.action === 'create' ? ch.toImage : ch.action === 'remove' ? ch.fromImage : ch.reasons.join('; ');
            p.out(`  ${ch.action.padEnd(9)} ${ch.name}${detail ? `  ${detail}` : ''}`);
          }
          for (const cr of n.credentials ?? []) p.out(`  credentials ${cr}`);
        }
        const changes = res.nodes.filter((n) => n.action !== 'unchanged').length;
        p.out(changes ? `${changes} of ${res.nodes.length} nodes would change` : `no changes: all ${res.nodes.length} nodes are up to date`);
      } finally {
        c.close();
      }
    });

  const rollout = program.command('rollout').description('health-gated rollouts: `kbctl rollout <module>`, `rollout status <module>`, `rollout undo <module>`');
  const runRollout = async (module: string, o: { maxParallel: string; healthyDeadline: string; minHealthyTime: string; detach?: boolean }, undo: boolean) => {
    const c = client();
    const json = globals().output === 'json';
    let last: RolloutInfo | undefined;
    const events: RolloutEvent[] = [];
    const printEvent = (e: RolloutEvent) => {
      const extra = e.check ? ` [${e.check}: ${e.observed}]` : '';
      p.out(`${clock(e.atMs)} ${(e.node || '-').padEnd(12)} ${e.kind.padEnd(18)} ${e.message}${extra}`);
    };
    try {
      await c.rollout({
        module,
        maxParallel: Number(o.maxParallel),
        healthyDeadlineMs: parseDuration(o.healthyDeadline),
        minHealthyTimeMs: parseDuration(o.minHealthyTime),
        undo,
        wait: !o.detach,
      }, (u: RolloutUpdate) => {
        if (u.info) {
          if (!last && !json) p.out(`rollout ${u.info.id}: ${module} revision ${u.info.fromRevision} -> ${u.info.revision}, max_parallel ${u.info.maxParallel}`);
          last = u.info;
        }
        if (u.event) {
          events.push(u.event);
          if (!json) printEvent(u.event);
        }
      });
    } catch (err) {
      // The leader went away mid-rollout: the rollout lives on in the store and the next
      // leader resumes it. Follow it through whichever replica answers.
      if (!(last && !o.detach && err instanceof ControlError && err.code === 14)) {
        c.close();
        throw err;
      }
      if (!json) p.err(`kbctl: lost the leader's stream (${err.message}); following rollout ${last.id} on the other coordinators`);
      last = await followRollout(c, module, last, events, json ? () => undefined : printEvent);
    } finally {
      c.close();
    }
    if (!last) throw new Error('coordinator ended the rollout stream without a result');
    if (json) p.out(JSON.stringify({ rollout: last, events }, null, 2));
    if (last.state === 'failed') {
      if (!json) p.err(`rollout ${last.id} FAILED on node ${last.failedNode}: check ${last.failedCheck}: ${last.observed}\n${last.error}`);
      setExit(EXIT.failed);
    } else if (!json) {
      p.out(last.state === 'succeeded' ? `rollout ${last.id} succeeded: revision ${last.revision} on every node` : `rollout ${last.id} is ${last.state} (detached)`);
    }
  };
  const rolloutOptions = (cmd: Command) => cmd
    .option('--max-parallel <n>', 'nodes changed at once', '1')
    .option('--healthy-deadline <duration>', 'a node must be healthy within', '120s')
    .option('--min-healthy-time <duration>', 'and stay healthy for', '10s')
    .option('--detach', 'start the rollout and return without waiting');
  rolloutOptions(rollout.command('start <module>', { isDefault: true }).description('roll out <module> to its nodes (same as `kbctl rollout <module>`)'))
    .action((module: string, o) => runRollout(module, o, false));
  rolloutOptions(rollout.command('undo <module>').description('roll back to the last revision that was healthy on every node, through the same health gates'))
    .action((module: string, o) => runRollout(module, o, true));
  rollout
    .command('status <module>')
    .description('show the latest rollout of <module>')
    .option('--events', 'include the event log')
    .action(async (module: string, o: { events?: boolean }) => {
      const c = client();
      try {
        const res = await c.rolloutStatus({ module, events: Boolean(o.events) });
        if (globals().output === 'json') return p.out(JSON.stringify(res, null, 2));
        if (!res.rollout) return p.out(`no rollout of ${module} yet`);
        const r = res.rollout;
        p.out(`rollout ${r.id}: ${r.module} revision ${r.fromRevision} -> ${r.revision}: ${r.state}${r.failedNode ? ` (node ${r.failedNode}, check ${r.failedCheck}: ${r.observed})` : ''}`);
        p.out(table(['NODE', 'STATE', 'ERROR'], r.nodes.map((n) => [n.node, n.state, n.error])));
        for (const e of res.events) p.out(`${clock(e.atMs)} ${(e.node || '-').padEnd(12)} ${e.kind.padEnd(18)} ${e.message}`);
        if (r.state === 'failed') setExit(EXIT.failed);
      } finally {
        c.close();
      }
    });

  const token = program.command('token').description('join tokens for adding servers: `token create`, `token list`, `token rm <id>`');
  token
    .command('create')
    .description('create a join token and print the one-line install command for a new server')
    .option('--ttl <duration>', 'valid for', '1h')
    .option('--uses <n>', 'number of servers that may enroll with it', '1')
    .option('--node <name>', 'only this inventory node may enroll with it')
    .option('--description <text>', 'a note shown by `token list`', '')
    .action(async (o: { ttl: string; uses: string; node?: string; description: string }) => {
      const uses = Number(o.uses);
      if (!Number.isInteger(uses) || uses < 1) throw new UsageError(`--uses ${o.uses}: expected a whole number >= 1`);
      const c = client();
      try {
        const res = await c.createToken({ ttlMs: parseDuration(o.ttl), uses, node: o.node ?? '', description: o.description });
        if (globals().output === 'json') return p.out(JSON.stringify(res, null, 2));
        const i = res.info!;
        p.out(`token ${i.id}: ${i.uses} use${i.uses === 1 ? '' : 's'}, expires ${new Date(i.expiresMs).toISOString()}${i.node ? `, only for node ${i.node}` : ''}`);
        p.out(res.token);
        p.out('');
        p.out('Run as root on the new server:');
        p.out(res.installCommand);
      } finally {
        c.close();
      }
    });
  token
    .command('list')
    .description('list join tokens: ID NODE USED EXPIRES STATE DESCRIPTION (secrets are never shown again)')
    .action(async () => {
      const c = client();
      try {
        const res = await c.listTokens();
        if (globals().output === 'json') return p.out(JSON.stringify(res.tokens, null, 2));
        p.out(table(['ID', 'NODE', 'USED', 'EXPIRES', 'STATE', 'USED-BY', 'DESCRIPTION'], res.tokens.map((t) => [
          t.id, t.node || '*', `${t.used}/${t.uses}`, new Date(t.expiresMs).toISOString().slice(0, 19) + 'Z', t.state, t.usedBy.join(',') || '-', t.description,
        ])));
      } finally {
        c.close();
      }
    });
  token
    .command('rm <id>')
    .description('revoke a join token (kept in `token list` as revoked)')
    .action(async (id: string) => {
      const c = client();
      try {
        const res = await c.removeToken(id);
        if (globals().output === 'json') return p.out(JSON.stringify(res.info, null, 2));
        p.out(`token ${id} revoked`);
      } finally {
        c.close();
      }
    });

  const drill = program.command('drill').description('cause a failure on purpose and measure it: `kbctl drill redis-failover`, `kbctl drill coordinator-failover`');
  drill
    .command('redis-failover')
    .description('stop (or pause, or kill) the Redis master through its agent while writing through HAProxy; report promotion time, switch time, write outage and lost writes; bring the old master back as a replica')
    .addOption(new Option('--mode <mode>', 'how the master fails').choices(['stop', 'pause', 'kill']).default('stop'))
    .option('--via <node>', 'HAProxy node to write through (default: the first one)')
    .option('--failover-timeout <duration>', 'promotion and switch must happen within', '90s')
    .option('--healthy-deadline <duration>', 'healthy again after the old master restarted, within', '120s')
    .option('--write-interval <duration>', 'one acknowledged write every', '5ms')
    .action(async (o: { mode: string; via?: string; failoverTimeout: string; healthyDeadline: string; writeInterval: string }) => {
      const c = client();
      const json = globals().output === 'json';
      let report: DrillReport | undefined;
      try {
        await c.drill({
          drill: 'redis-failover', mode: o.mode, via: o.via ?? '', failoverTimeoutMs: parseDuration(o.failoverTimeout),
          healthyDeadlineMs: parseDuration(o.healthyDeadline), writeIntervalMs: parseDuration(o.writeInterval),
        }, (u) => {
          if (u.event && !json) p.out(`${clock(u.event.atMs)} ${u.event.source.padEnd(26)} ${u.event.what}`);
          if (u.report) report = u.report;
        });
      } finally {
        c.close();
      }
      if (!report) throw new Error('coordinator ended the drill stream without a report');
      if (json) p.out(JSON.stringify(report, null, 2));
      else p.out(drillSummary(report));
      if (!report.ok) setExit(EXIT.failed);
    });

  program
    .command('coordinators')
    .description('list coordinator replicas: NAME ADDRESS ROLE TERM LEADER STORE SESSIONS (asks every replica)')
    .action(async () => {
      const c = client();
      try {
        const first = await c.coordinatorStatus();
        const addresses = [...new Set([...c.addresses, ...first.replicas.map((r) => r.address)])];
        const all = await Promise.all(addresses.map(async (a) => ({ address: a, s: await c.coordinatorStatus(a).catch((err: unknown) => errorMessage(err)) })));
        if (globals().output === 'json') {
          return p.out(JSON.stringify(all.map((x) => (typeof x.s === 'string' ? { address: x.address, error: x.s } : x.s)), null, 2));
        }
        p.out(table(['NAME', 'ADDRESS', 'ROLE', 'TERM', 'LEADER', 'STORE', 'SESSIONS'], all.map(({ address, s }) => (typeof s === 'string'
          ? ['?', address, 'unreachable', '-', '-', s, '-']
          : [s.name, s.address, s.role, s.term ? String(s.term) : '-', s.leaderName || '-', storeText(s), String(s.sessions)]))));
      } finally {
        c.close();
      }
    });

  drill
    .command('coordinator-failover')
    .description('kill -9 the leader coordinator (or --isolate it from etcd); report time to a new leader, time until every agent is connected again, stopped containers (none may), and whether an in-flight rollout completed')
    .option('--rollout <module>', 'start a rollout of <module> first and kill the leader while it is in flight')
    .option('--max-parallel <n>', 'rollout: nodes changed at once', '1')
    .option('--healthy-deadline <duration>', 'rollout: a node must be healthy within', '120s')
    .option('--min-healthy-time <duration>', 'rollout: and stay healthy for', '10s')
    .option('--timeout <duration>', 'longest wait for each phase', '120s')
    .option('--isolate <duration>', 'instead of killing the leader, cut it off from etcd for this long (longer than the lease TTL): it must step down within the TTL and rejoin as a follower after')
    .action(async (o: { rollout?: string; maxParallel: string; healthyDeadline: string; minHealthyTime: string; timeout: string; isolate?: string }) => {
      const c = client();
      const json = globals().output === 'json';
      try {
        const report = await coordinatorFailoverDrill(c, {
          rollout: o.rollout ? { module: o.rollout, maxParallel: Number(o.maxParallel), healthyDeadlineMs: parseDuration(o.healthyDeadline), minHealthyTimeMs: parseDuration(o.minHealthyTime) } : undefined,
          timeoutMs: parseDuration(o.timeout),
          isolateMs: o.isolate ? parseDuration(o.isolate) : undefined,
          progress: json ? undefined : (line) => p.out(`${clock(Date.now())} ${line}`),
        });
        if (json) p.out(JSON.stringify(report, null, 2));
        else for (const line of formatFailoverReport(report)) p.out(line);
        if (!report.pass) setExit(EXIT.failed);
      } finally {
        c.close();
      }
    });

  program
    .command('validate')
    .description('check servers.tsv, versions.yaml (and module settings) incl. secret-looking values; prints FILE:LINE: message per problem, exits 1 if any')
    .option('--inventory <file>', 'servers.tsv')
    .option('--versions <file>', 'versions.yaml')
    .option('--settings <file>', 'module settings (YAML): scanned for secret-looking values')
    .option('--env <env>', 'servers.tsv ENV rows to check', 'prod')
    .action((o: { inventory?: string; versions?: string; settings?: string; env: string }) => {
      if (!o.inventory && !o.versions && !o.settings) throw new UsageError('validate needs --inventory FILE, --versions FILE and/or --settings FILE');
      const problems = validateFiles({ inventoryFile: o.inventory, versionsFile: o.versions, settingsFile: o.settings, env: o.env });
      if (globals().output === 'json') p.out(JSON.stringify(problems, null, 2));
      else for (const pr of problems) p.out(formatProblem(pr));
      if (problems.length) setExit(EXIT.failed);
      else if (globals().output !== 'json') p.out(`ok: ${[o.inventory, o.versions, o.settings].filter(Boolean).join(', ')}`);
    });

  program
    .command('versions')
    .description('print pinned versions; --shell prints `export REDIS_IMAGE="..."` lines for the old scripts')
    .requiredOption('--versions <file>', 'versions.yaml')
    .option('--shell', 'print export lines')
    .action((o: { versions: string; shell?: boolean }) => {
      const v = loadVersions(o.versions);
      if (o.shell) return p.out(shellExports(v).trimEnd());
      p.out(table(['KEY', 'VALUE', 'LINE'], [...v.entries.values()].map((e) => [e.key, e.value, String(e.line)])));
    });

  registerSecretsCommands(program, { p, client, json: () => globals().output === 'json', setExit });

  return program;
}

const secs = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

/** The human report of `kbctl drill redis-failover`. */
export function drillSummary(r: DrillReport): string {
  const lines = [
    `drill redis-failover (${r.mode}): ${r.ok ? 'OK' : `FAILED: ${r.error}`}`,
    `  master ${r.oldMasterNode} ${r.oldMaster} -> ${r.newMasterNode || '?'} ${r.newMaster || '?'}, writes through HAProxy ${r.proxy}`,
    table(['MEASURE', 'VALUE', 'FROM -> TO'], [
      ['time to Sentinel promotion', r.switchMasterAtMs ? secs(r.promotionMs) : '-', `${r.mode} requested -> first +switch-master`],
      ['switch to the new master', r.firstAckNewAtMs && r.switchMasterAtMs ? secs(r.switchMs) : '-', '+switch-master -> first write acknowledged by the new master'],
      ['client-visible write outage', r.firstAckNewAtMs ? secs(r.writeOutageMs) : '-', 'last write acknowledged by the old master -> first by the new'],
      ['acknowledged writes lost (RPO)', `${r.writesLost} of ${r.writesAcked}`, `acknowledged, missing on the master afterwards (${r.writesFailed} writes failed, never counted)`],
      ['old master back as replica', r.healthyAfter ? secs(r.rejoinMs) : '-', 'restart -> redis and haproxy healthy'],
    ]).split('\n').map((l) => `  ${l}`).join('\n'),
    `  HAProxy routed to the old master after the switch: ${r.returnedToOld ? 'YES (split brain)' : 'never'}`,
  ];
  return lines.join('\n');
}

function storeText(s: CoordinatorStatusResponse): string {
  return s.storeOk ? s.store : `${s.store}: ${s.storeError}`;
}

/** Polls the rollout's status (any replica) until it is no longer running, printing events not seen yet. */
async function followRollout(c: ControlClient, module: string, last: RolloutInfo, events: RolloutEvent[], print: (e: RolloutEvent) => void): Promise<RolloutInfo> {
  const seen = new Set(events.map((e) => e.id));
  for (;;) {
    const s = await c.rolloutStatus({ module, events: true }).catch((err: unknown) => {
      if (err instanceof ControlError && err.code === 14) return undefined;
      throw err;
    });
    if (s?.rollout) {
      if (s.rollout.id !== last.id) throw new Error(`rollout ${last.id} was superseded by ${s.rollout.id}`);
      for (const e of s.events) {
        if (seen.has(e.id)) continue;
        seen.add(e.id);
        events.push(e);
        print(e);
      }
      if (s.rollout.state !== 'running') return s.rollout;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

class UsageError extends Error {
  override name = 'UsageError';
}

export async function main(argv: string[], p: Printer = stdio): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(p, (c) => { code = c; });
  program.exitOverride();
  program.configureOutput({ writeOut: (s) => p.out(s.trimEnd()), writeErr: (s) => p.err(s.trimEnd()) });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? EXIT.ok : EXIT.error;
    }
    if (err instanceof InputError) {
      for (const pr of err.problems) p.err(formatProblem(pr));
      return EXIT.failed;
    }
    p.err(`kbctl: ${errorMessage(err)}`);
    return err instanceof ControlError ? (err.code === 3 || err.code === 9 ? EXIT.failed : EXIT.error) : EXIT.error;
  }
  return code;
}
