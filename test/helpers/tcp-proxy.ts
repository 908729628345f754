import net from 'node:net';

/**
 * A TCP proxy that a test can cut like a network partition: `blackhole()` stops
 * forwarding in both directions without closing anything (bytes are held, as packets
 * would be queued or retransmitted), so the client sees silence, never a reset;
 * `heal()` delivers what was held and forwards again, like a partition that ends.
 *
 * Used between one coordinator and etcd to isolate that coordinator alone: unlike a
 * firewall rule on the shared loopback interface it affects no other process and cannot
 * outlive the test (see docs/adr/0011-leader-election-and-fencing.md).
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<Pair>();
  private cut = false;

  constructor(readonly listenHost: string, readonly listenPort: number, readonly targetHost: string, readonly targetPort: number) {}

  get address(): string {
    return `${this.listenHost}:${this.listenPort}`;
  }

  async start(): Promise<void> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.listenPort, this.listenHost, () => resolve());
    });
  }

  /** Stops forwarding (both directions, existing and new connections). */
  blackhole(): void {
    this.cut = true;
  }

  /** Delivers what was held, then forwards again. */
  heal(): void {
    this.cut = false;
    for (const p of this.pairs) p.flush();
  }

  get isCut(): boolean {
    return this.cut;
  }

  async stop(): Promise<void> {
    for (const p of this.pairs) p.destroy();
    this.pairs.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: net.Socket): void {
    const pair = new Pair(client, this.targetHost, this.targetPort, () => this.cut, () => this.pairs.delete(pair));
    this.pairs.add(pair);
  }
}

class Pair {
  private upstream: net.Socket | undefined;
  private readonly toUpstream: Buffer[] = [];
  private readonly toClient: Buffer[] = [];
  private closed = false;
  private clientGone = false;

  constructor(private readonly client: net.Socket, private readonly host: string, private readonly port: number, private readonly cut: () => boolean, private readonly onClose: () => void) {
    client.on('data', (d: Buffer) => {
      this.toUpstream.push(d);
      this.flush();
    });
    // Bytes the client sent before closing still reach the server once the cut heals,
    // as they would after a partition that TCP retransmission outlived.
    const gone = () => {
      this.clientGone = true;
      if (!this.toUpstream.length) this.destroy();
      else this.flush();
    };
    client.on('error', gone);
    client.on('close', gone);
    this.flush();
  }

  flush(): void {
    if (this.closed || this.cut()) return;
    if (!this.upstream) {
      const up = net.connect(this.port, this.host);
      this.upstream = up;
      up.on('data', (d: Buffer) => {
        this.toClient.push(d);
        this.flush();
      });
      up.on('error', () => this.destroy());
      up.on('close', () => this.destroy());
    }
    for (const d of this.toUpstream.splice(0)) this.upstream.write(d);
    if (this.clientGone) {
      this.upstream.end();
      return;
    }
    for (const d of this.toClient.splice(0)) this.client.write(d);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    if (this.clientGone && this.upstream && !this.upstream.destroyed) this.upstream.end();
    else this.upstream?.destroy();
    this.onClose();
  }
}
