import { desiredCredentialFiles } from '../../credentials/index.js';
import { CredentialsRefusedError } from '../../credentials/writer.js';
import { ApplyError } from '../../../shared/errors/index.js';
import { inStep } from '../errors.js';
import { record } from '../record.js';
import type { ReconcileStep, StepRun } from '../types.js';

/**
 * Step 0: credentials. Brings every credentials file of the module (`<name>.env` per
 * SecretRef, rendered SecretFile templates) to the wanted version, mode and owner, before
 * configuration files and containers (which mount them). A file that is already right is not
 * touched. Writing needs the secret values, which only come with the state being applied
 * (ctx.secretValues); when they are needed and absent (a file removed or edited by hand, an
 * agent restarted between two writes), the step asks for them (ctx.onSecretsMissing) and
 * fails with a message naming the file. Refusals (a symlink at the target, a name outside the
 * directory) fail the step and are reported; nothing is written.
 */
export const credentialsStep: ReconcileStep = {
  name: 'credentials',
  async run(r: StepRun): Promise<void> {
    const { ctx, state } = r;
    const files = await inStep('credentials', '', state.module, ctx.node, async () => desiredCredentialFiles(state));
    if (files.length === 0) return;
    const creds = ctx.credentials;
    if (!creds) throw new ApplyError(`apply ${state.module} on ${ctx.node}: step credentials: this agent has no credentials directory`);
    await inStep('credentials', `directory ${creds.dir.path}`, state.module, ctx.node, async () => {
      for (const a of await creds.dir.ensure()) record(r, 'credentials', a);
    });
    for (const f of files) {
      await inStep('credentials', `file ${f.file}`, state.module, ctx.node, async () => {
        const { drift } = await creds.drift(f);
        switch (drift) {
          case 'none':
            return;
          case 'symlink':
            throw new CredentialsRefusedError(`refused: ${creds.dir.fileFor(f.file)} is a symlink; nothing was written and its target is left untouched`);
          case 'other':
            throw new CredentialsRefusedError(`refused: ${creds.dir.fileFor(f.file)} is not a regular file`);
          case 'owner':
            await creds.dir.fixOwner(f.file, f.owner);
            record(r, 'credentials', `chmod ${(f.owner.mode & 0o7777).toString(8).padStart(4, '0')} ${f.owner.uid}:${f.owner.gid} ${f.file}`);
            return;
          case 'content': {
            const values = ctx.secretValues;
            const missing = f.needs.filter((k) => !values?.has(k));
            if (missing.length || !values) {
              const reason = `${f.file} needs ${missing.join(', ')}, whose values this agent does not hold`;
              ctx.onSecretsMissing?.(state, reason);
              throw new ApplyError(`${reason}; asked the coordinator to resend them`);
            }
            await creds.write(f, values, ctx.pause);
            record(r, 'credentials', `write ${f.file} (${f.ident.startsWith('env:') ? f.ident.slice(4) : 'template'})`);
          }
        }
      });
    }
  },
};
