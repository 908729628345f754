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
  /** Each file's last clean parse and the stamp it was read at: a settings change does not re-read a 5,000-row servers.tsv. */
  private readonly parsed = new Map<string, { stamp: string; value: unknown }>();

  constructor(private readonly files: InputFiles) {
    this.current();
  }

  current(): PlanInputs {
    const { inventoryFile, versionsFile, settingsFile, env } = this.files;
    const stamps = [inventoryFile, versionsFile, settingsFile].map(stamp);
    const key = stamps.join('|');
    if (this.cached?.key === key) return this.cached.inputs;
    const inputs: PlanInputs = {
      inventory: this.parse('inventory', stamps[0]!, () => loadInventory(inventoryFile, { env })),
      versions: this.parse('versions', stamps[1]!, () => loadVersions(versionsFile)),
      settings: settingsFile ? this.parse('settings', stamps[2]!, () => loadSettingsFile(settingsFile, MODULES.map((m) => m.name))) : {},
    };
    this.cached = { key, inputs };
    this.good = inputs;
    return inputs;
  }

  private parse<T>(role: 'inventory' | 'versions' | 'settings', at: string, load: () => T): T {
    const hit = this.parsed.get(role);
    if (hit && hit.stamp === at && at !== 'missing') return hit.value as T;
    const value = load();
    this.parsed.set(role, { stamp: at, value });
    return value;
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
