import { mkdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { containerSpecHash } from '../../shared/plan/hash.js';
import { ApplyError } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { DriverError, engineMessage, statusOf } from './errors.js';
import { demuxBuffer, onJsonLines } from './jsonlines.js';
import { parsePinnedRef } from './ref.js';
import {
  LABELS, toContainerState,
  type ContainerDriver, type CreateParams, type DriverEvent, type ExecResult, type ManagedContainer,
} from './types.js';

/** Options of {@link DockerDriver}. */
export interface DockerDriverOptions {
  /** Path of the engine's unix socket. Wins over `host`. */
  socketPath?: string;
  /**
   * Engine address in DOCKER_HOST form: `unix:///path/docker.sock` or `tcp://host:port`.
   * Default (neither set): `unix:///var/run/docker.sock`. The driver never reads the
   * environment itself: the agent's options compile DOCKER_HOST into this field.
   */
  host?: string;
  /** Node name used in error messages ("pull X on <node>: ..."). Default: os.hostname(). */
  node?: string;
  /** Logger for the event stream's reconnects; default: silent. */
  log?: Logger;
  /** Delay before re-opening a dropped event stream, doubled per failed attempt up to 30 s. Default 1000 ms. */
  eventsRetryMs?: number;
}

/** Upper bound of the output `exec` keeps (the tail). */
const EXEC_OUTPUT_MAX = 64 * 1024;
const EVENT_ACTIONS = ['die', 'stop', 'start', 'destroy'];

/**
 * {@link ContainerDriver} over the Docker Engine API (dockerode). Stateless apart from
 * in-flight pull de-duplication: two concurrent `ensureImage` calls for the same digest
 * share one pull. See the interface for the guarantees.
 */
export class DockerDriver implements ContainerDriver {
  private readonly docker: Docker;
  private readonly node: string;
  private readonly log: Logger | undefined;
  private readonly eventsRetryMs: number;
  private readonly pulls = new Map<string, Promise<{ imageId: string; pulled: boolean }>>();

  constructor(opts: DockerDriverOptions = {}) {
    this.docker = new Docker(connectionOptions(opts));
    this.node = opts.node ?? hostname();
    this.log = opts.log;
    this.eventsRetryMs = opts.eventsRetryMs ?? 1000;
  }

  async ping(): Promise<{ version: string }> {
    try {
      const v = await this.docker.version();
      return { version: v.Version };
    } catch (err) {
      throw new DriverError('ping', 'docker engine', this.node, err, statusOf(err));
    }
  }

  async ensureImage(ref: string, onProgress?: (msg: string) => void): Promise<{ imageId: string; pulled: boolean }> {
    const pinned = parsePinnedRef(ref);
    const local = await this.imageId(pinned.byDigest, ref);
    if (local) return { imageId: local, pulled: false };
    const inflight = this.pulls.get(pinned.byDigest);
    if (inflight) return inflight;
    const p = (async () => {
      try {
        const stream = await this.docker.createImage({ fromImage: pinned.repo, tag: pinned.digest });
        await followPull(stream, onProgress);
      } catch (err) {
        throw new DriverError('pull', ref, this.node, err, statusOf(err));
      }
      const id = await this.imageId(pinned.byDigest, ref);
      if (!id) throw new DriverError('pull', ref, this.node, new Error(`${pinned.byDigest} is not present after the pull`));
      return { imageId: id, pulled: true };
    })();
    this.pulls.set(pinned.byDigest, p);
    try {
      return await p;
    } finally {
      this.pulls.delete(pinned.byDigest);
    }
  }

  async list(node: string): Promise<ManagedContainer[]> {
    try {
      const infos = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABELS.managed}=true`, `${LABELS.node}=${node}`] },
      });
      return infos.map((i) => fromLabels(i.Id, i.Names[0] ?? '', i.Labels ?? {}, i.State, i.ImageID));
    } catch (err) {
      throw new DriverError('list containers of', node, this.node, err, statusOf(err));
    }
  }

  async create(params: CreateParams): Promise<string> {
    const { dockerName, spec } = params;
    const image = parsePinnedRef(spec.image).byDigest;
    const binds: string[] = [];
    for (const v of spec.volumes) {
      const hostPath = params.mapHostPath(v.hostPath);
      await ensureDir(hostPath).catch((err: unknown) => {
        throw new DriverError('create host directory', `${hostPath} for ${dockerName}`, this.node, err);
      });
      binds.push(`${hostPath}:${v.containerPath}${v.readOnly ? ':ro' : ''}`);
    }
    const labels: Record<string, string> = {
      [LABELS.managed]: 'true',
      [LABELS.node]: params.node,
      [LABELS.module]: params.module,
      [LABELS.container]: spec.name,
      [LABELS.revision]: String(params.revision),
      [LABELS.specHash]: containerSpecHash(spec),
      [LABELS.image]: spec.image,
    };
    const body: Docker.ContainerCreateOptions = {
      name: dockerName,
      Image: image,
      Env: Object.keys(spec.env).sort().map((k) => `${k}=${spec.env[k] ?? ''}`),
      Labels: labels,
      HostConfig: {
        Binds: binds,
        ...(spec.networkMode ? { NetworkMode: spec.networkMode } : {}),
        ...(spec.restartPolicy ? { RestartPolicy: { Name: spec.restartPolicy } } : {}),
      },
    };
    // An empty Cmd is left out so that the image's CMD applies (as with `docker run IMAGE`).
    if (spec.args.length > 0) body.Cmd = spec.args;
    if (spec.entrypoint) body.Entrypoint = [spec.entrypoint];
    try {
      const c = await this.docker.createContainer(body);
      return c.id;
    } catch (err) {
      if (statusOf(err) === 409) throw await this.nameTaken(dockerName, err);
      throw new DriverError('create container', dockerName, this.node, err, statusOf(err));
    }
  }

  async start(id: string): Promise<void> {
    await this.own(id, 'start');
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (statusOf(err) === 304) return;
      throw new DriverError('start container', id, this.node, err, statusOf(err));
    }
  }

  async stop(id: string, timeoutS: number): Promise<void> {
    if (!(await this.own(id, 'stop', true))) return;
    try {
      await this.docker.getContainer(id).stop({ t: timeoutS });
    } catch (err) {
      const code = statusOf(err);
      if (code === 304 || code === 404) return;
      throw new DriverError('stop container', id, this.node, err, code);
    }
  }

  async kill(id: string, signal: string): Promise<void> {
    await this.own(id, 'kill');
    try {
      await this.docker.getContainer(id).kill({ signal });
    } catch (err) {
      throw new DriverError(`kill (${signal}) container`, id, this.node, err, statusOf(err));
    }
  }

  async pause(id: string): Promise<void> {
    await this.own(id, 'pause');
    try {
      await this.docker.getContainer(id).pause();
    } catch (err) {
      // 409 "is already paused"
      if (statusOf(err) === 409 && /already paused/i.test(engineMessage(err))) return;
      throw new DriverError('pause container', id, this.node, err, statusOf(err));
    }
  }

  async unpause(id: string): Promise<void> {
    await this.own(id, 'unpause');
    try {
      await this.docker.getContainer(id).unpause();
    } catch (err) {
      // 409 "is not paused"
      if (statusOf(err) === 409 && /not paused/i.test(engineMessage(err))) return;
      throw new DriverError('unpause container', id, this.node, err, statusOf(err));
    }
  }

  async remove(id: string): Promise<void> {
    if (!(await this.own(id, 'remove', true))) return;
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const code = statusOf(err);
      if (code === 404) return;
      // 409: a removal is already in progress; wait for it so that the name is free on return.
      if (code === 409 && (await this.waitGone(id, 10_000))) return;
      throw new DriverError('remove container', id, this.node, err, code);
    }
  }

  async inspect(id: string): Promise<ManagedContainer | undefined> {
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new DriverError('inspect container', id, this.node, err, statusOf(err));
    }
    const labels = info.Config.Labels ?? {};
    if (labels[LABELS.managed] !== 'true') return undefined;
    return { ...fromLabels(info.Id, info.Name, labels, info.State.Status, info.Image), startedAt: info.State.StartedAt };
  }

  async logs(id: string, tail: number): Promise<string> {
    await this.own(id, 'read logs of');
    try {
      const out: unknown = await this.docker.getContainer(id).logs({ stdout: true, stderr: true, tail, follow: false });
      return Buffer.isBuffer(out) ? demuxBuffer(out) : String(out);
    } catch (err) {
      throw new DriverError('read logs of', id, this.node, err, statusOf(err));
    }
  }

  async exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    await this.own(id, 'exec in');
    const what = `${JSON.stringify(cmd)} in ${id.slice(0, 12)}`;
    const deadline = Date.now() + timeoutMs;
    try {
      const ex = await this.docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: false });
      const stream = (await ex.start({ hijack: true, stdin: false })) as NodeJS.ReadableStream & { destroy(): void };
      let output = '';
      const sink = new PassThrough();
      sink.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.length > EXEC_OUTPUT_MAX * 2) output = output.slice(-EXEC_OUTPUT_MAX);
      });
      this.docker.modem.demuxStream(stream, sink, sink);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          stream.destroy();
          reject(new Error(`no exit after ${timeoutMs} ms`));
        }, Math.max(0, deadline - Date.now()));
        const done = (): void => { clearTimeout(timer); resolve(); };
        stream.on('end', done);
        stream.on('close', done);
        stream.on('error', (err: Error) => { clearTimeout(timer); reject(err); });
      });
      // The stream can end a moment before the engine records the exit code.
      let info = await ex.inspect();
      while (info.Running && Date.now() < deadline) {
        await sleep(20);
        info = await ex.inspect();
      }
      if (info.Running) throw new Error(`no exit after ${timeoutMs} ms`);
      return { exitCode: info.ExitCode ?? -1, output: output.slice(-EXEC_OUTPUT_MAX) };
    } catch (err) {
      throw new DriverError('exec', what, this.node, err, statusOf(err));
    }
  }

  events(onEvent: (e: DriverEvent) => void, node?: string): () => void {
    let stopped = false;
    let current: (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    let timer: NodeJS.Timeout | undefined;
    let since: string | undefined;
    let failures = 0;
    const label = [`${LABELS.managed}=true`, ...(node ? [`${LABELS.node}=${node}`] : [])];

    const retry = (why: string): void => {
      current = undefined;
      if (stopped || timer) return;
      // Back off while the engine is away (1x, 2x, 4x ... the retry delay, at most 30 s).
      const delay = Math.min(this.eventsRetryMs * 2 ** Math.min(failures, 10), 30_000);
      failures += 1;
      this.log?.warn({ why, retryInMs: delay }, 'docker event stream lost; reconnecting');
      timer = setTimeout(() => { timer = undefined; void connect(); }, delay);
    };
    const connect = async (): Promise<void> => {
      let stream: NodeJS.ReadableStream & { destroy?: () => void };
      try {
        stream = await this.docker.getEvents({
          filters: { type: ['container'], label, event: EVENT_ACTIONS },
          ...(since ? { since } : {}),
        } as Docker.GetEventsOptions);
      } catch (err) {
        retry(engineMessage(err));
        return;
      }
      if (stopped) { stream.destroy?.(); return; }
      current = stream;
      failures = 0;
      let ended = false;
      const end = (why: string): void => { if (ended) return; ended = true; retry(why); };
      onJsonLines(stream, (obj) => {
        const ev = toDriverEvent(obj);
        if (!ev) return;
        if (typeof obj.time === 'number') since = String(obj.time);
        onEvent(ev);
      });
      stream.on('end', () => end('stream ended'));
      stream.on('close', () => end('stream closed'));
      stream.on('error', (err: Error) => end(err.message));
    };
    void connect();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      current?.destroy?.();
      current = undefined;
    };
  }

  // ------------------------------------------------------------------------------------------

  /** Engine image id of `byDigest`, or undefined when it is not present. */
  private async imageId(byDigest: string, ref: string): Promise<string | undefined> {
    try {
      const info = await this.docker.getImage(byDigest).inspect();
      return info.Id;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new DriverError('inspect image', ref, this.node, err, statusOf(err));
    }
  }

  /**
   * Refuses to act on a container kb does not manage. Returns false (instead of throwing)
   * when `missingOk` and the container does not exist.
   */
  private async own(id: string, op: string, missingOk = false): Promise<boolean> {
    let labels: Record<string, string>;
    try {
      labels = (await this.docker.getContainer(id).inspect()).Config.Labels ?? {};
    } catch (err) {
      if (missingOk && statusOf(err) === 404) return false;
      throw new DriverError(`${op} container`, id, this.node, err, statusOf(err));
    }
    if (labels[LABELS.managed] !== 'true') {
      throw new ApplyError(`refusing to ${op} container ${id.slice(0, 12)} on ${this.node}: it is not managed by kb`);
    }
    return true;
  }

  private async nameTaken(dockerName: string, cause: unknown): Promise<Error> {
    let holder: Docker.ContainerInspectInfo | undefined;
    try {
      holder = await this.docker.getContainer(dockerName).inspect();
    } catch {
      holder = undefined;
    }
    if (!holder) return new DriverError('create container', dockerName, this.node, cause, 409);
    const l = holder.Config.Labels ?? {};
    const short = holder.Id.slice(0, 12);
    if (l[LABELS.managed] !== 'true') {
      return new ApplyError(
        `container name ${dockerName} on ${this.node} is taken by container ${short} (image ${holder.Config.Image}) that kb does not manage; kb will not remove it: rename or remove it by hand`,
        { cause },
      );
    }
    return new ApplyError(
      `container name ${dockerName} on ${this.node} is taken by kb-managed container ${short} (node ${l[LABELS.node] ?? '?'}, module ${l[LABELS.module] ?? '?'}, container ${l[LABELS.container] ?? '?'})`,
      { cause },
    );
  }

  private async waitGone(id: string, timeoutMs: number): Promise<boolean> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      try {
        await this.docker.getContainer(id).inspect();
      } catch (err) {
        if (statusOf(err) === 404) return true;
      }
      await sleep(100);
    }
    return false;
  }
}

function connectionOptions(opts: DockerDriverOptions): Docker.DockerOptions {
  if (opts.socketPath) return { socketPath: opts.socketPath };
  const host = opts.host;
  if (!host) return { socketPath: '/var/run/docker.sock' };
  if (host.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host.startsWith('tcp://') || host.startsWith('http://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    return { protocol: 'http', host: u.hostname, port: Number(u.port || 2375) };
  }
  if (host.startsWith('/')) return { socketPath: host };
  throw new ApplyError(`unsupported docker host "${host}" (want unix:///path or tcp://host:port)`);
}

function fromLabels(id: string, name: string, labels: Record<string, string>, state: string | undefined, imageId: string): ManagedContainer {
  const revision = Number.parseInt(labels[LABELS.revision] ?? '', 10);
  return {
    id,
    dockerName: name.replace(/^\//, ''),
    node: labels[LABELS.node] ?? '',
    module: labels[LABELS.module] ?? '',
    logicalName: labels[LABELS.container] ?? '',
    specHash: labels[LABELS.specHash] ?? '',
    revision: Number.isFinite(revision) ? revision : 0,
    state: toContainerState(state),
    image: labels[LABELS.image] ?? '',
    imageId,
  };
}

function toDriverEvent(obj: Record<string, unknown>): DriverEvent | undefined {
  const actor = obj.Actor as { ID?: unknown; Attributes?: Record<string, unknown> } | undefined;
  const id = typeof actor?.ID === 'string' ? actor.ID : typeof obj.id === 'string' ? obj.id : undefined;
  const action = typeof obj.Action === 'string' ? obj.Action : typeof obj.status === 'string' ? obj.status : undefined;
  if (!id || !action) return undefined;
  const attr = actor?.Attributes ?? {};
  const str = (k: string): string | undefined => (typeof attr[k] === 'string' ? attr[k] : undefined);
  const ev: DriverEvent = { id, action };
  const node = str(LABELS.node);
  const module = str(LABELS.module);
  const container = str(LABELS.container);
  if (node !== undefined) ev.node = node;
  if (module !== undefined) ev.module = module;
  if (container !== undefined) ev.container = container;
  return ev;
}

/**
 * Consumes a pull stream to its end. Reports one line per layer status change (not every
 * byte-count update); rejects with the engine's message when the stream carries an error.
 */
function followPull(stream: NodeJS.ReadableStream, onProgress?: (msg: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const lastStatus = new Map<string, string>();
    let failure: string | undefined;
    onJsonLines(stream, (obj) => {
      if (typeof obj.error === 'string' || obj.errorDetail) {
        const detail = obj.errorDetail as { message?: unknown } | undefined;
        failure = typeof obj.error === 'string' ? obj.error : String(detail?.message ?? 'pull failed');
        return;
      }
      const status = typeof obj.status === 'string' ? obj.status : undefined;
      if (!status || !onProgress) return;
      const layer = typeof obj.id === 'string' ? obj.id : '';
      if (lastStatus.get(layer) === status) return;
      lastStatus.set(layer, status);
      onProgress(layer ? `${layer}: ${status}` : status);
    });
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else if (failure) reject(new Error(failure));
      else resolve();
    };
    stream.on('end', () => finish());
    stream.on('close', () => finish());
    stream.on('error', (err: Error) => finish(err));
  });
}

async function ensureDir(p: string): Promise<void> {
  try {
    await stat(p);
    return; // exists (a directory, or a file bound as a single-file volume)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(p, { recursive: true, mode: 0o755 });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
