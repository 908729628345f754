import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { installCommand, renderInstallScript } from '../../coordinator/bootstrap/script.js';
import { installerRuntimeEnv } from '../helpers/installer-env.js';

const params = {
  bootstrapUrl: 'https://install-01:7444',
  coordinator: 'install-01:7443',
  pinnedPubkey: 'sha256//Ya7TP7CxV7m8ztAZxIQoMBxw0YmRpW978z/pxRRHDlM=',
  agentSha256: 'a'.repeat(64),
};

describe('install.sh', () => {
  it('bakes in the coordinator address, key pin and agent sha256, and is valid POSIX sh (dash -n)', () => {
    const s = renderInstallScript(params);
    expect(s).not.toMatch(/@@[A-Z0-9_]+@@/);
    expect(s).toContain("BOOTSTRAP='https://install-01:7444'");
    expect(s).toContain("COORDINATOR='install-01:7443'");
    expect(s).toContain(`AGENT_SHA256='${'a'.repeat(64)}'`);
    const f = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-sh-')), 'install.sh');
    writeFileSync(f, s);
    execFileSync('dash', ['-n', f]);
  });

  it('checks the sha256 before anything is moved into place, and enrolls (pin check) before writing files', () => {
    const s = renderInstallScript(params);
    const at = (needle: string) => {
      const i = s.indexOf(needle);
      expect(i, needle).toBeGreaterThan(0);
      return i;
    };
    const check = at('sha256 mismatch for kb-agent');
    const enroll = at('"$agent" enroll --node');
    const firstPut = at('put "$agent" "$bin" 0755');
    expect(check).toBeLessThan(enroll);
    expect(enroll).toBeLessThan(firstPut);
    expect(s).toMatch(/^Restart=always$/m);
    expect(s).toMatch(/^KillMode=process$/m);
  });

  it('with several coordinator replicas, the agent gets every address in its environment file', () => {
    const s = renderInstallScript({ ...params, coordinator: 'install-01:7443,install-02:7443,10.0.0.252:7443' });
    expect(s).toContain("COORDINATOR='install-01:7443,install-02:7443,10.0.0.252:7443'");
    expect(s).toContain('echo "KB_COORDINATOR=$COORDINATOR"');
  });

  it('gives the agent NODE_OPTIONS=--jitless in its env file, on a # runtime line the test harness and the bench also read', () => {
    const s = renderInstallScript(params);
    expect(s).toMatch(/^ {2}echo "NODE_OPTIONS=--jitless" {2}# runtime$/m);
    expect(installerRuntimeEnv(s)).toEqual({ NODE_OPTIONS: '--jitless' });
    // the runtime lines are inside the block that writes kb-agent.env
    const block = s.slice(s.indexOf('echo "# kb-agent environment'), s.indexOf('} >"$tmp/kb-agent.env"'));
    expect(block).toContain('echo "NODE_OPTIONS=--jitless"');
  });

  it('refuses values that are not shell-safe', () => {
    expect(() => renderInstallScript({ ...params, coordinator: "x'; rm -rf / #" })).toThrow('not shell-safe');
  });

  it('the install command pins the key and passes the token to sh only', () => {
    expect(installCommand({ bootstrapUrl: params.bootstrapUrl, pinnedPubkey: params.pinnedPubkey, token: 'K10x::a.b' }))
      .toBe(`curl -fsSL -k --pinnedpubkey ${params.pinnedPubkey} https://install-01:7444/install.sh | KB_TOKEN=K10x::a.b sh -`);
  });
});
