/**
 * `kbctl secrets list | import DIR | rotate NAME`. Values never reach the output: `list`
 * and `rotate` receive none, and `import` registers every value it reads with the scrubber
 * behind the printer before anything is printed.
 */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { ImportedSecret, SecretRotationInfo } from '../../proto/types.js';
import { CREDENTIALS, credentialByFile, parseEnvFile } from '../../shared/credentials/index.js';
import { InputError, type Problem } from '../../shared/errors/index.js';
import { registerSecretValues } from '../../shared/log/index.js';
import type { ControlClient } from './client.js';
import { clock, parseDuration, table, type Printer } from './printer.js';

export interface SecretsCommandDeps {
  p: Printer;
  client: () => ControlClient;
  json: () => boolean;
  setExit: (code: number) => void;
}

/** Reads `DIR/*.env` of an existing installation. Throws InputError (file:line) on a bad file; never quotes a value. */
export function readCredentialsDir(dir: string): { secrets: ImportedSecret[]; skipped: string[]; warnings: string[] } {
  let names: string[];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.env')).sort();
  } catch (err) {
    throw new InputError([{ file: dir, line: 0, message: `cannot read directory: ${(err as Error).message}` }]);
  }
  const problems: Problem[] = [];
  const secrets: ImportedSecret[] = [];
  const skipped: string[] = [];
  const warnings: string[] = [];
  for (const f of names) {
    const file = path.join(dir, f);
    const spec = credentialByFile(f);
    if (!spec) {
      skipped.push(`${file}: not a kb credentials file (known: ${CREDENTIALS.map((c) => c.file).join(', ')})`);
      continue;
    }
    const st = lstatSync(file);
    if (st.isSymbolicLink() || !st.isFile()) {
      problems.push({ file, line: 0, message: 'not a regular file (symlinks are not followed)' });
      continue;
    }
    if ((st.mode & 0o077) !== 0) warnings.push(`${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: credentials files should be 0600`);
    const parsed = parseEnvFile(readFileSync(file, 'utf8'), file);
    registerSecretValues(parsed.vars.values());
    problems.push(...parsed.problems);
    secrets.push({ name: spec.name, vars: Object.fromEntries(parsed.vars), sourceFile: file });
  }
  if (problems.length) throw new InputError(problems);
  if (secrets.length === 0) throw new InputError([{ file: dir, line: 0, message: `no credentials file found (looked for ${CREDENTIALS.map((c) => c.file).join(', ')})` }]);
  return { secrets, skipped, warnings };
}

function rotationLine(r: SecretRotationInfo): string {
  const what = r.state === 'running' ? `phase ${r.phase}, running` : r.state === 'failed' ? `paused in phase ${r.phase}: ${r.error}` : 'done';
  return `rotation of ${r.name}: version ${r.fromVersion} -> ${r.toVersion}: ${what}`;
}

export function registerSecretsCommands(program: Command, d: SecretsCommandDeps): void {
  const secrets = program.command('secrets').description('credentials kept by the coordinator: list, import, rotate (values are never shown)');

  secrets
    .command('list')
    .description('NAME FILE VERSION STATE SOURCE CREATED NODES: every version of every credentials file, and which nodes hold it')
    .action(async () => {
      const c = d.client();
      try {
        const res = await c.listSecrets();
        if (d.json()) return d.p.out(JSON.stringify(res, null, 2));
        d.p.out(table(
          ['NAME', 'FILE', 'VERSION', 'STATE', 'SOURCE', 'CREATED', 'NODES'],
          res.versions.map((v) => [
            v.name, v.file, String(v.version), v.state, v.source, new Date(v.createdMs).toISOString().slice(0, 19).replace('T', ' '),
            [v.nodes.join(','), v.pendingNodes.length ? `pending: ${v.pendingNodes.join(',')}` : ''].filter(Boolean).join(' ') || '-',
          ]),
        ));
        for (const r of res.rotations) if (r.state !== 'succeeded') d.p.out(rotationLine(r));
      } finally {
        c.close();
      }
    });

  secrets
    .command('import <dir>')
    .description('adopt the *.env files of an existing installation (e.g. /opt/keybuzz-installer/credentials) as the active versions')
    .option('--force', 'adopt a file even when its current version is already delivered (then roll the modules out)')
    .option('--dry-run', 'check and report, change nothing')
    .action(async (dir: string, o: { force?: boolean; dryRun?: boolean }) => {
      const read = readCredentialsDir(dir);
      for (const s of read.skipped) d.p.err(`skipped ${s}`);
      for (const w of read.warnings) d.p.err(`warning: ${w}`);
      const c = d.client();
      try {
        const res = await c.importSecrets({ secrets: read.secrets, force: Boolean(o.force), dryRun: Boolean(o.dryRun) });
        if (d.json()) return d.p.out(JSON.stringify(res, null, 2));
        for (const r of res.results) d.p.out(`${r.name}: ${r.action}${r.version ? ` (version ${r.version})` : ''}: ${r.message}`);
      } finally {
        c.close();
      }
    });

  secrets
    .command('rotate <name>')
    .description('new version of <name>.env rolled out through health-gated rollouts: servers accept both, consumers switch, then the old version is retired')
    .option('--max-parallel <n>', 'nodes changed at once', '1')
    .option('--healthy-deadline <duration>', 'a node must be healthy within', '120s')
    .option('--min-healthy-time <duration>', 'and stay healthy for', '10s')
    .option('--detach', 'start (or resume) the rotation and return without waiting')
    .action(async (name: string, o: { maxParallel: string; healthyDeadline: string; minHealthyTime: string; detach?: boolean }) => {
      const c = d.client();
      let last: SecretRotationInfo | undefined;
      const events: unknown[] = [];
      try {
        await c.rotateSecret({
          name, maxParallel: Number(o.maxParallel), healthyDeadlineMs: parseDuration(o.healthyDeadline),
          minHealthyTimeMs: parseDuration(o.minHealthyTime), wait: !o.detach,
        }, (u) => {
          if (u.info) {
            if (!d.json() && (!last || last.phase !== u.info.phase || last.state !== u.info.state)) d.p.out(rotationLine(u.info));
            last = u.info;
          }
          if (u.event) {
            events.push(u.event);
            if (!d.json()) {
              const e = u.event;
              d.p.out(`${clock(e.atMs)} ${(e.node || '-').padEnd(12)} ${e.kind.padEnd(18)} ${e.message}${e.check ? ` [${e.check}: ${e.observed}]` : ''}`);
            }
          }
        });
      } finally {
        c.close();
      }
      if (!last) throw new Error('coordinator ended the rotation stream without a result');
      if (d.json()) d.p.out(JSON.stringify({ rotation: last, events }, null, 2));
      if (last.state === 'failed') {
        if (!d.json()) d.p.err(`rotation of ${name} FAILED in phase ${last.phase}: ${last.error}\nfix the cause and run \`kbctl secrets rotate ${name}\` again to resume`);
        d.setExit(1);
      }
    });
}
