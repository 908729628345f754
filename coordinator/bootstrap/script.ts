import { KB_VERSION } from '../../shared/version.js';
import template from './install.sh?raw';

export interface InstallScriptParams {
  /** https://HOST:PORT of the bootstrap server. */
  bootstrapUrl: string;
  /** HOST:PORT[,HOST:PORT...] agents dial for their mTLS session (every replica; tried in order). */
  coordinator: string;
  /** curl --pinnedpubkey value of the bootstrap server's key. */
  pinnedPubkey: string;
  /** sha256 hex of the agent binary served at /kb-agent. */
  agentSha256: string;
}

const SAFE = /^[A-Za-z0-9:/.\-_[\]+=,]+$/;

/** install.sh with this coordinator's values baked in. Values are checked to be shell-safe. */
export function renderInstallScript(p: InstallScriptParams): string {
  const values: Record<string, string> = {
    '@@VERSION@@': KB_VERSION,
    '@@BOOTSTRAP@@': p.bootstrapUrl,
    '@@COORDINATOR@@': p.coordinator,
    '@@PINNED@@': p.pinnedPubkey,
    '@@AGENT_SHA256@@': p.agentSha256,
  };
  for (const [k, v] of Object.entries(values)) {
    if (!SAFE.test(v)) throw new Error(`install.sh value for ${k} is not shell-safe: ${JSON.stringify(v)}`);
  }
  return template.replace(/@@[A-Z0-9_]+@@/g, (m) => values[m] ?? m);
}

/** The one line an operator pastes on a new server. */
export function installCommand(p: { bootstrapUrl: string; pinnedPubkey: string; token: string }): string {
  return `curl -fsSL -k --pinnedpubkey ${p.pinnedPubkey} ${p.bootstrapUrl}/install.sh | KB_TOKEN=${p.token} sh -`;
}
