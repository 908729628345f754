/**
 * Who is calling, from the mTLS peer certificate (grpc-js `call.getAuthContext()`), never
 * from message fields. The TLS layer has already checked the chain against the private CA
 * (the only root the server trusts); this adds kb's rules:
 *  - ControlService: an admin certificate (OU=kb-admin);
 *  - AgentService: a node certificate (OU=kb-node, CN = node name) whose serial is the
 *    node's current one (or the one it just renewed from), so a re-enrolled node's old
 *    certificate is refused.
 * In plaintext development mode there is no identity and every check passes (loopback only).
 */
import * as grpc from '@grpc/grpc-js';
import { certInfo, type CertRole } from '../../shared/tls/index.js';
import type { Store } from '../store/types.js';

export interface PeerCert { commonName: string; role: CertRole | undefined; serial: string; notAfterMs: number }

interface HasAuthContext { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } | null }

/** The peer's certificate, or undefined on a connection without TLS client identity. */
export function peerCertificate(call: HasAuthContext): PeerCert | undefined {
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (!raw) return undefined;
  const info = certInfo(raw);
  return { commonName: info.commonName, role: info.role, serial: info.serial, notAfterMs: info.notAfterMs };
}

/** A gRPC status error object (what grpc-js handlers pass to callbacks or emit). */
export interface GrpcRefusal { code: grpc.status; details: string }

export function refusal(code: grpc.status, details: string): GrpcRefusal {
  return { code, details };
}

function describe(p: PeerCert): string {
  return `${p.role ?? 'unknown-role'} certificate "${p.commonName}"`;
}

export class Authenticator {
  constructor(private readonly store: Store, private readonly tls: boolean) {}

  /** Every ControlService call: throws a PERMISSION_DENIED/UNAUTHENTICATED refusal unless the caller is admin. */
  admin(call: HasAuthContext): void {
    if (!this.tls) return;
    const p = peerCertificate(call);
    if (!p) throw refusal(grpc.status.UNAUTHENTICATED, 'no client certificate: kbctl needs the admin credential from `kb-coordinator init`');
    if (p.role !== 'admin') {
      throw refusal(grpc.status.PERMISSION_DENIED, `the ControlService requires the admin credential; the caller presented a ${describe(p)}`);
    }
  }

  /**
   * Agent calls: the node the caller IS. Throws a refusal for anything but a current node
   * certificate. Returns undefined in plaintext mode (no identity).
   */
  async node(call: HasAuthContext, now = Date.now()): Promise<PeerCert | undefined> {
    if (!this.tls) return undefined;
    const p = peerCertificate(call);
    if (!p) throw refusal(grpc.status.UNAUTHENTICATED, 'no client certificate');
    if (p.role !== 'node') throw refusal(grpc.status.PERMISSION_DENIED, `agent calls require a node certificate; the caller presented a ${describe(p)}`);
    const id = await this.store.getNodeIdentity(p.commonName);
    if (!id) throw refusal(grpc.status.PERMISSION_DENIED, `node "${p.commonName}" has no enrolled certificate on this coordinator`);
    const current = p.serial === id.serial || (id.renewedFrom?.serial === p.serial && id.renewedFrom.notAfterMs > now);
    if (!current) {
      throw refusal(grpc.status.PERMISSION_DENIED, `certificate ${p.serial} of node "${p.commonName}" is revoked: the node enrolled again on ${new Date(id.enrolledMs).toISOString()} (current serial ${id.serial})`);
    }
    return p;
  }
}
