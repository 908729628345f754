import type Docker from 'dockerode';

export interface ContainerEvent {
  id: string;
  action: string;
  node: string;
  container: string;
  timeMs: number;
}

/**
 * Records the engine's lifecycle events (create, start, die, stop, destroy) of kb-managed
 * containers from now on, straight from the Docker engine: the ground truth for "no
 * container was restarted that the rollout did not ask for".
 */
export class ContainerEvents {
  readonly events: ContainerEvent[] = [];
  private stream: NodeJS.ReadableStream | undefined;

  static async start(docker: Docker): Promise<ContainerEvents> {
    const ce = new ContainerEvents();
    const stream = await docker.getEvents({ filters: { type: ['container'], label: ['kb.managed=true'], event: ['create', 'start', 'die', 'stop', 'destroy'] } });
    ce.stream = stream;
    let buf = '';
    stream.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const e = JSON.parse(line) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> }; timeNano: number };
        ce.events.push({ id: e.Actor.ID, action: e.Action, node: e.Actor.Attributes['kb.node'] ?? '', container: e.Actor.Attributes['kb.container'] ?? '', timeMs: Math.round(e.timeNano / 1e6) });
      }
    });
    return ce;
  }

  /** Ids of containers that were started again after they had been running (same id: a restart). */
  restarted(runningBefore: Set<string>): string[] {
    return [...new Set(this.events.filter((e) => e.action === 'start' && runningBefore.has(e.id)).map((e) => e.id))];
  }

  /** Containers started per node (new containers, once each). */
  startsPerNode(): Map<string, number> {
    const m = new Map<string, number>();
    for (const e of this.events.filter((x) => x.action === 'start')) m.set(e.node, (m.get(e.node) ?? 0) + 1);
    return m;
  }

  stop(): void {
    (this.stream as unknown as { destroy?: () => void })?.destroy?.();
  }
}
