import { ApplyError } from '../../shared/errors/index.js';
import { containerSpecHash } from '../../shared/plan/hash.js';
import { parsePinnedRef } from '../../agent/driver/ref.js';
import {
  LABELS, type ContainerDriver, type ContainerState, type CreateParams, type DriverEvent, type ExecResult, type ManagedContainer,
} from '../../agent/driver/types.js';

const IMG1 = `127.0.0.1:5000/kb/redis:7.0-kb1@sha256:${'1'.repeat(64)}`;

// ---------------------------------------------------------------------------------------------
// In-memory engine: just enough of Docker's behaviour (unique names, labels, states) to test
// the pure reconcile logic. Every behaviour is also proven on the real engine in
// test/e2e/agent-driver.test.ts.

export interface FakeContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
  state: ContainerState;
  image: string;
  startedAt: number;
}

export class FakeEngine implements ContainerDriver {
  readonly containers = new Map<string, FakeContainer>();
  readonly images = new Set<string>();
  readonly pulls: string[] = [];
  readonly madeDirs: string[] = [];
  failCreate: string | undefined;
  private seq = 0;
  private clock = 0;

  async ping(): Promise<{ version: string }> { return { version: 'fake' }; }

  async ensureImage(ref: string, onProgress?: (msg: string) => void): Promise<{ imageId: string; pulled: boolean }> {
    const p = parsePinnedRef(ref);
    if (this.images.has(p.byDigest)) return { imageId: `id-${p.digest}`, pulled: false };
    onProgress?.('Pulling fs layer');
    this.pulls.push(p.byDigest);
    this.images.add(p.byDigest);
    return { imageId: `id-${p.digest}`, pulled: true };
  }

  async list(node: string): Promise<ManagedContainer[]> {
    return [...this.containers.values()]
      .filter((c) => c.labels[LABELS.managed] === 'true' && c.labels[LABELS.node] === node)
      .map(toManaged);
  }

  async create(params: CreateParams): Promise<string> {
    if (this.failCreate === params.spec.name) throw new Error('engine said no');
    const taken = [...this.containers.values()].find((c) => c.name === params.dockerName);
    if (taken) throw new ApplyError(`container name ${params.dockerName} is taken by container ${taken.id}`);
    const byDigest = parsePinnedRef(params.spec.image).byDigest;
    if (!this.images.has(byDigest)) throw new Error(`No such image: ${byDigest}`);
    for (const v of params.spec.volumes) this.madeDirs.push(params.mapHostPath(v.hostPath));
    const id = `c${++this.seq}`;
    this.containers.set(id, {
      id, name: params.dockerName, state: 'created', image: `id-${parsePinnedRef(params.spec.image).digest}`, startedAt: 0,
      labels: {
        [LABELS.managed]: 'true', [LABELS.node]: params.node, [LABELS.module]: params.module,
        [LABELS.container]: params.spec.name, [LABELS.revision]: String(params.revision),
        [LABELS.specHash]: containerSpecHash(params.spec), [LABELS.image]: params.spec.image,
      },
    });
    return id;
  }

  async start(id: string): Promise<void> {
    const c = this.own(id);
    if (c.state !== 'running') { c.state = 'running'; c.startedAt = ++this.clock; }
  }
  async stop(id: string): Promise<void> {
    const c = this.containers.get(id);
    if (!c) return;
    this.own(id);
    if (c.state === 'running') c.state = 'exited';
  }
  async kill(id: string): Promise<void> {
    const c = this.own(id);
    if (c.state !== 'running') throw new Error(`container ${id} is not running`);
    c.state = 'exited';
  }
  async pause(id: string): Promise<void> {
    const c = this.own(id);
    if (c.state === 'running') c.state = 'paused';
  }
  async unpause(id: string): Promise<void> {
    const c = this.own(id);
    if (c.state === 'paused') c.state = 'running';
  }
  async remove(id: string): Promise<void> {
    if (!this.containers.has(id)) return;
    this.own(id);
    this.containers.delete(id);
  }
  async inspect(id: string): Promise<ManagedContainer | undefined> {
    const c = this.containers.get(id);
    return c && c.labels[LABELS.managed] === 'true' ? { ...toManaged(c), startedAt: `t${c.startedAt}` } : undefined;
  }
  async logs(): Promise<string> { return ''; }
  async exec(): Promise<ExecResult> { return { exitCode: 0, output: '' }; }
  events(_onEvent: (e: DriverEvent) => void): () => void { return () => undefined; }

  /** Adds a container kb did not create (no labels), running. */
  addForeign(name: string): FakeContainer {
    const c: FakeContainer = { id: `f${++this.seq}`, name, labels: {}, state: 'running', image: 'id-x', startedAt: ++this.clock };
    this.containers.set(c.id, c);
    return c;
  }
  /** Adds a kb-managed container as if another agent (or an older revision) had created it. */
  addManaged(node: string, module: string, logical: string, name: string): FakeContainer {
    const c: FakeContainer = {
      id: `m${++this.seq}`, name, state: 'running', image: 'id-y', startedAt: ++this.clock,
      labels: {
        [LABELS.managed]: 'true', [LABELS.node]: node, [LABELS.module]: module, [LABELS.container]: logical,
        [LABELS.revision]: '1', [LABELS.specHash]: 'old', [LABELS.image]: IMG1,
      },
    };
    this.containers.set(c.id, c);
    return c;
  }
  byName(name: string): FakeContainer | undefined {
    return [...this.containers.values()].find((c) => c.name === name);
  }
  private own(id: string): FakeContainer {
    const c = this.containers.get(id);
    if (!c) throw new Error(`no such container ${id}`);
    if (c.labels[LABELS.managed] !== 'true') throw new ApplyError(`refusing to touch ${id}: not managed by kb`);
    return c;
  }
}

export function toManaged(c: FakeContainer): ManagedContainer {
  return {
    id: c.id, dockerName: c.name, node: c.labels[LABELS.node] ?? '', module: c.labels[LABELS.module] ?? '',
    logicalName: c.labels[LABELS.container] ?? '', specHash: c.labels[LABELS.specHash] ?? '',
    revision: Number(c.labels[LABELS.revision] ?? 0), state: c.state, image: c.labels[LABELS.image] ?? '', imageId: c.image,
  };
}

