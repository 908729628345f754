import { createHash } from 'node:crypto';
import type { ModuleState } from '../../proto/types.js';
import { findCredential, renderEnvFile, renderTemplate, templateRefs } from '../../shared/credentials/index.js';
import { ApplyError } from '../../shared/errors/index.js';
import { canonicalJson } from '../../shared/plan/hash.js';
import type { Owner } from './writer.js';

/** Secret values of one apply, by `name@version`. */
export type SecretValues = ReadonlyMap<string, Readonly<Record<string, string>>>;

/** One credentials-directory file a module state wants, described without its values. */
export interface DesiredCredentialFile {
  /** File name in the credentials directory. */
  file: string;
  /** What the file is made from: `env:redis@2`, or `tpl:<digest>` of a template. Never a value. */
  ident: string;
  owner: Owner;
  /** `name@version` of every secret version the content needs. */
  needs: string[];
  /** Renders the content from the values (throws ApplyError naming what is missing). */
  render(values: SecretValues): Buffer;
}

const ROOT_0600: Owner = { mode: 0o600, uid: 0, gid: 0 };

/**
 * The credentials files of `state`: one `<name>.env` per SecretRef with a file (0600
 * root:root) and one per SecretFile template. Throws ApplyError when two entries name the same file.
 */
export function desiredCredentialFiles(state: ModuleState): DesiredCredentialFile[] {
  const out: DesiredCredentialFile[] = [];
  for (const ref of state.secrets ?? []) {
    if (!ref.file) continue;
    const key = `${ref.name}@${ref.version}`;
    out.push({
      file: ref.file, ident: `env:${key}`, owner: ROOT_0600, needs: [key],
      render: (values) => {
        const vars = values.get(key);
        if (!vars) throw new ApplyError(`no values for ${key}`);
        return Buffer.from(renderEnvFile({ name: ref.name, version: ref.version, vars, order: findCredential(ref.name)?.vars.map((v) => v.name) }));
      },
    });
  }
  for (const f of state.secretFiles ?? []) {
    const needs = [...new Set(templateRefs(f.template).map((t) => `${t.name}@${t.version}`))];
    const owner: Owner = { mode: f.mode || 0o600, uid: f.uid, gid: f.gid };
    out.push({
      file: f.file, ident: `tpl:${createHash('sha256').update(canonicalJson(f)).digest('hex').slice(0, 16)}`, owner, needs,
      render: (values) => Buffer.from(renderTemplate(f.template, (name, version, variable) => values.get(`${name}@${version}`)?.[variable])),
    });
  }
  const seen = new Set<string>();
  for (const f of out) {
    if (seen.has(f.file)) throw new ApplyError(`credentials file ${f.file} is wanted twice by module ${state.module}`);
    seen.add(f.file);
  }
  return out;
}
