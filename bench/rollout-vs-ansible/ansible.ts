/**
 * The Ansible peer of bench/rollout-vs-ansible: a private sshd on the nodes' loopback
 * addresses, and a playbook whose per-host variables come from kb's own planner, so that
 * Ansible writes the same files and runs the same containers as kb's agents do.
 *
 * Everything lives in one 0700 temporary directory (keys, sshd configuration, inventory with
 * the per-host variables, which hold the Redis passwords); `remove()` deletes it. Task output
 * that would show a secret is `no_log`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Inputs } from '../../coordinator/inputs.js';
import { RegistryResolver } from '../../coordinator/images/resolve.js';
import { getModule } from '../../coordinator/modules/index.js';
import { computeDesired } from '../../coordinator/planner.js';
import { generateVars } from '../../coordinator/secrets/generate.js';
import { CREDENTIALS_DIR, findCredential, renderEnvFile, renderTemplate } from '../../shared/credentials/index.js';
import type { ModuleState } from '../../proto/types.js';

/** Engine-name prefix of the peer's containers (kb's are `<node>_<name>`). */
export const ANSIBLE_PREFIX = 'ansible_';

export interface PeerNode { name: string; ip: string }

/** sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS): larger N gets more sshd processes. */
const SSHD_MAX_ADDRESSES = 16;

/**
 * A private sshd: root login with a generated key only, on `port` of every node address
 * (one process per 16 addresses, same keys and settings).
 */
export class Sshd {
  private readonly children: ChildProcess[] = [];
  private output = '';
  constructor(readonly dir: string, readonly port: number, readonly addresses: string[]) {}

  get clientKey(): string { return path.join(this.dir, 'id_ed25519'); }

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kb-bench-host', '-f', path.join(this.dir, 'host_ed25519')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kb-bench-client', '-f', this.clientKey]);
    writeFileSync(path.join(this.dir, 'authorized_keys'), readFileSync(`${this.clientKey}.pub`), { mode: 0o600 });
    // sshd needs its privilege separation directory.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    for (let i = 0; i * SSHD_MAX_ADDRESSES < this.addresses.length; i++) {
      const mine = this.addresses.slice(i * SSHD_MAX_ADDRESSES, (i + 1) * SSHD_MAX_ADDRESSES);
      const cfg = [
        `Port ${this.port}`,
        ...mine.map((a) => `ListenAddress ${a}`),
        `HostKey ${path.join(this.dir, 'host_ed25519')}`,
        `PidFile ${path.join(this.dir, `sshd-${i}.pid`)}`,
        `AuthorizedKeysFile ${path.join(this.dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // The key files live under /tmp (a 1777 directory), which StrictModes refuses.
        'StrictModes no',
        // forks = N connections arrive at once: the defaults (10:30:100, 10 sessions) would drop some.
        'MaxStartups 200:30:400',
        'MaxSessions 200',
        'UseDNS no',
        'Subsystem sftp /usr/lib/openssh/sftp-server',
        'LogLevel ERROR',
        '',
      ].join('\n');
      const file = path.join(this.dir, `sshd_config-${i}`);
      writeFileSync(file, cfg);
      const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => { this.output += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { this.output += d.toString(); });
      this.children.push(child);
      const t0 = Date.now();
      while (!(await canConnect(mine[0]!, this.port))) {
        if (child.exitCode !== null) throw new Error(`sshd exited: ${this.output}`);
        if (Date.now() - t0 > 15_000) throw new Error(`sshd did not listen on ${mine[0]}:${this.port}: ${this.output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }));
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

interface HostVars {
  ansible_host: string;
  kb_dirs: { path: string; mode: string }[];
  kb_files: { dest: string; mode: string; content: string }[];
  kb_containers: { name: string; image: string; entrypoint: string[]; command: string[]; env: Record<string, string>; volumes: string[]; restart_policy: string }[];
  kb_ping: { host: string; port: number; password: string };
}

export interface PlaybookRun { ms: number; code: number; changed: number; ok: number; failed: number; unreachable: number; output: string }

/**
 * One N: the playbook, an inventory built from kb's plan for each node, and `run()`.
 * Node roots are `<dir>/nodes/<node>/root`, as the test agents' --host-root.
 */
export class AnsiblePeer {
  readonly dir: string;
  private readonly values: Record<string, string>;
  private readonly ansibleCfg: string;

  constructor(readonly nodes: PeerNode[], readonly sshd: Sshd, readonly dockerHost: string, parent = os.tmpdir()) {
    this.dir = mkdtempSync(path.join(parent, 'kb-bench-ansible-'));
    chmodSync(this.dir, 0o700);
    this.values = generateVars(findCredential('redis')!);
    this.ansibleCfg = path.join(this.dir, 'ansible.cfg');
    mkdirSync(path.join(this.dir, 'cp'), { mode: 0o700 });
    mkdirSync(path.join(this.dir, 'tmp'), { mode: 0o700 });
    writeFileSync(this.ansibleCfg, [
      '[defaults]',
      `forks = ${nodes.length}`,
      'host_key_checking = False',
      'gathering = explicit',
      'interpreter_python = /usr/bin/python3',
      'retry_files_enabled = False',
      'deprecation_warnings = False',
      `local_tmp = ${path.join(this.dir, 'tmp')}`,
      '',
      '[ssh_connection]',
      'pipelining = True',
      '# Connections are kept between runs (and the scenarios of one N), as an operator re-running a play would have them.',
      'ssh_args = -o ControlMaster=auto -o ControlPersist=300s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR',
      `control_path_dir = ${path.join(this.dir, 'cp')}`,
      `control_path = ${path.join(this.dir, 'cp')}/%%C`,
      '',
    ].join('\n'));
    writeFileSync(path.join(this.dir, 'playbook.yml'), PLAYBOOK);
  }

  nodeRoot(node: string): string {
    return path.join(this.dir, 'nodes', node, 'root');
  }

  /** The Redis password the peer's nodes use (for the benchmark's own checks; never printed). */
  get password(): string {
    return this.values.REDIS_PASSWORD!;
  }

  /**
   * Runs kb's planner (the same code and inputs as the coordinator's `kbctl rollout`) and
   * writes the inventory with every node's files and containers. Returns the pinned images.
   */
  async plan(files: { inventoryFile: string; versionsFile: string; settingsFile: string }): Promise<Record<string, string>> {
    const inputs = new Inputs({ ...files, env: 'prod' }).current();
    const desired = await computeDesired(getModule('redis'), inputs, new RegistryResolver(), { redis: { active: 1, accepted: [1] } });
    const hosts: Record<string, HostVars & { ansible_port: number }> = {};
    for (const n of this.nodes) {
      const st = desired.states[n.name];
      if (!st) throw new Error(`kb's plan has no state for ${n.name}`);
      hosts[n.name] = { ...this.hostVars(n, st), ansible_port: this.sshd.port };
    }
    const inventory = {
      redis: {
        hosts,
        vars: {
          ansible_user: 'root',
          ansible_ssh_private_key_file: this.sshd.clientKey,
          kb_docker_host: this.dockerHost,
        },
      },
    };
    const text = JSON.stringify(inventory, null, 1);
    // The inventory holds plain data only: nothing in it may be read as a Jinja template.
    if (/\{\{|\{%/.test(text)) throw new Error('the plan contains "{{" or "{%", which Ansible would template');
    writeFileSync(path.join(this.dir, 'inventory.json'), text, { mode: 0o600 });
    return desired.images;
  }

  private hostVars(n: PeerNode, st: ModuleState): HostVars {
    const root = this.nodeRoot(n.name);
    const host = (p: string) => path.join(root, path.posix.normalize(p));
    const lookup = (name: string, version: number, variable: string) => (name === 'redis' && version === 1 ? this.values[variable] : undefined);
    const files: HostVars['kb_files'] = [];
    for (const f of st.files) files.push({ dest: host(f.path), mode: mode(f.mode), content: f.content.toString('utf8') });
    for (const ref of st.secrets ?? []) {
      if (!ref.file) continue;
      files.push({ dest: host(`${CREDENTIALS_DIR}/${ref.file}`), mode: '0600', content: renderEnvFile({ name: ref.name, version: ref.version, vars: this.values, order: findCredential(ref.name)?.vars.map((v) => v.name) }) });
    }
    for (const f of st.secretFiles ?? []) files.push({ dest: host(`${CREDENTIALS_DIR}/${f.file}`), mode: mode(f.mode), content: renderTemplate(f.template, lookup) });
    const fileDests = new Set(files.map((f) => f.dest));
    const dirs = new Map<string, string>();
    dirs.set(host(CREDENTIALS_DIR), '0700');
    for (const c of st.containers) for (const v of c.volumes) if (!fileDests.has(host(v.hostPath))) dirs.set(host(v.hostPath), '0755');
    for (const f of files) if (!dirs.has(path.dirname(f.dest))) dirs.set(path.dirname(f.dest), '0755');
    const redis = st.containers.find((c) => c.name === 'redis');
    const port = Number(redis?.args[redis.args.indexOf('--port') + 1]);
    if (!redis || !Number.isInteger(port)) throw new Error(`kb's plan for ${n.name} has no redis container with --port`);
    return {
      ansible_host: n.ip,
      kb_dirs: [...dirs].map(([p, m]) => ({ path: p, mode: m })),
      kb_files: files,
      kb_containers: [...st.containers].sort((a, b) => a.order - b.order).map((c) => ({
        name: `${ANSIBLE_PREFIX}${n.name}_${c.name}`,
        // repository@digest: the digest kb pinned (the tag in kb's `repo:tag@digest` is informative only).
        image: c.image.replace(/:[^:/@]+@/, '@'),
        entrypoint: c.entrypoint ? [c.entrypoint] : [],
        command: c.args,
        env: c.env,
        volumes: c.volumes.map((v) => `${host(v.hostPath)}:${v.containerPath}${v.readOnly ? ':ro' : ''}`),
        restart_policy: c.restartPolicy || 'unless-stopped',
      })),
      kb_ping: { host: n.ip, port, password: this.values.REDIS_PASSWORD! },
    };
  }

  /** `ansible-playbook`, timed from spawn to exit. */
  run(): Promise<PlaybookRun> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      const c = spawn('ansible-playbook', ['-i', path.join(this.dir, 'inventory.json'), path.join(this.dir, 'playbook.yml')], {
        cwd: this.dir,
        env: { ...process.env, ANSIBLE_CONFIG: this.ansibleCfg, ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      c.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      c.stderr.on('data', (d: Buffer) => { out += d.toString(); });
      c.on('close', (code) => {
        const ms = performance.now() - t0;
        // KB_BENCH_ANSIBLE_LOG=FILE keeps every run's output (tasks with secrets are no_log).
        if (process.env.KB_BENCH_ANSIBLE_LOG) appendFileSync(process.env.KB_BENCH_ANSIBLE_LOG, out);
        const recap = [...out.matchAll(/^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)];
        const sum = (i: number) => recap.reduce((s, m) => s + Number(m[i]), 0);
        resolve({ ms, code: code ?? -1, ok: sum(1), changed: sum(2), unreachable: sum(3), failed: sum(4), output: out });
      });
    });
  }

  /** Removes the temporary directory (keys of the inventory, passwords, node roots). */
  remove(): void {
    // The ControlPersist masters hold connections to sshd: ask them to exit first.
    for (const n of this.nodes) {
      try {
        execFileSync('ssh', ['-o', `ControlPath=${path.join(this.dir, 'cp')}/%C`, '-O', 'exit', '-p', String(this.sshd.port), `root@${n.ip}`], { stdio: 'ignore', timeout: 5000 });
      } catch { /* no master for this host */ }
    }
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}

function mode(m: number): string {
  return `0${(m & 0o7777).toString(8).padStart(3, '0')}`;
}

/**
 * What an operator would write: create the directories, write the files (0600 for
 * credentials), run the containers in kb's order, then wait until Redis answers PING (with
 * the password). Fair best: no fact gathering, pipelining, SSH ControlMaster/ControlPersist,
 * forks = N, the strategy that lets each host go at its own pace.
 */
const PLAYBOOK = `# Written by bench/rollout-vs-ansible: the redis module's work, as kb's plan describes it per host.
- name: redis (kb's plan, applied by Ansible)
  hosts: redis
  gather_facts: false
  strategy: free
  tasks:
    - name: directories
      ansible.builtin.file:
        path: "{{ item.path }}"
        state: directory
        mode: "{{ item.mode }}"
      loop: "{{ kb_dirs }}"
      loop_control:
        label: "{{ item.path | basename }}"

    - name: files (credentials 0600)
      ansible.builtin.copy:
        dest: "{{ item.dest }}"
        content: "{{ item.content }}"
        mode: "{{ item.mode }}"
      loop: "{{ kb_files }}"
      no_log: true

    - name: containers
      community.docker.docker_container:
        docker_host: "{{ kb_docker_host }}"
        name: "{{ item.name }}"
        image: "{{ item.image }}"
        entrypoint: "{{ item.entrypoint }}"
        command: "{{ item.command }}"
        command_handling: correct
        env: "{{ item.env }}"
        volumes: "{{ item.volumes }}"
        network_mode: host
        restart_policy: "{{ item.restart_policy }}"
        state: started
      loop: "{{ kb_containers }}"
      loop_control:
        label: "{{ item.name }}"

    # A shell loop polling every 0.1 s (Ansible's own retries/until waits whole seconds).
    - name: wait until redis answers PING
      ansible.builtin.command:
        argv:
          - sh
          - -c
          - 'i=0; until [ "$(redis-cli --no-auth-warning -h "$1" -p "$2" PING 2>/dev/null)" = PONG ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1; done'
          - wait-ping
          - "{{ kb_ping.host }}"
          - "{{ kb_ping.port }}"
      environment:
        REDISCLI_AUTH: "{{ kb_ping.password }}"
      changed_when: false
      no_log: true
`;
