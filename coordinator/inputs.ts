import { statSync } from 'node:fs';
import { loadInventory } from '../shared/inventory/index.js';
import { loadVersions } from '../shared/versions/index.js';
import { loadSettingsFile } from './modules/settings-file.js';
import { MODULES } from './modules/index.js';
import type { PlanInputs } from './modules/types.js';

export interface InputFiles {
  inventoryFile: string;
  versionsFile: string;
  settingsFile?: string;
  /** servers.tsv ENV filter. Default 'prod'. */
  env: string;
}

/**
 * The coordinator's view of its input files. Files are re-read when their modification
 * time or size changes, so an operator edits servers.tsv or versions.yaml and re-runs
 * `kbctl plan`/`rollout` without restarting anything.
 *
 * `current()` throws the InputError of a bad file (plans and rollouts refuse to run);
 * `lastGood()` returns the last inputs that loaded cleanly (sessions keep being accepted
 * while an operator fixes a typo).
 */
export class Inputs {
  private cached: { key: string; inputs: PlanInputs } | undefined;
  private good: PlanInputs | undefined;

  constructor(private readonly files: InputFiles) {
    this.current();
  }

  current(): PlanInputs {
    const key = [this.files.inventoryFile, this.files.versionsFile, this.files.settingsFile].map(stamp).join('|');
    if (this.cached?.key === key) return this.cached.inputs;
    const inputs: PlanInputs = {
      inventory: loadInventory(this.files.inventoryFile, { env: this.files.env }),
      versions: loadVersions(this.files.versionsFile),
      settings: this.files.settingsFile ? loadSettingsFile(this.files.settingsFile, MODULES.map((m) => m.name)) : {},
    };
    this.cached = { key, inputs };
    this.good = inputs;
    return inputs;
  }

  lastGood(): PlanInputs {
    try {
      return this.current();
    } catch {
      return this.good!;
    }
  }
}

function stamp(file: string | undefined): string {
  if (!file) return '-';
  try {
    const s = statSync(file);
    return `${s.mtimeMs}:${s.size}`;
  } catch {
    return 'missing';
  }
}
