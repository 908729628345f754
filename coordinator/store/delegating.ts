import type {
  AssignmentRecord, EventRecord, NodeIdentityRecord, NodeModuleRecord, NodeRecord, RevisionRecord, RolloutRecord, RolloutState, SecretStateRecord,
  SecretVersionRecord, Store, TokenRecord,
} from './types.js';

/**
 * A Store that forwards every call to whatever `current()` returns at the time of the
 * call (or throws what it throws). The HA runtime hands this to long-lived users (agent
 * sessions, kbctl handlers) because it replaces its etcd connection after an outage.
 * close() does nothing: the owner closes the stores it creates.
 */
export class DelegatingStore implements Store {
  constructor(private readonly current: () => Store) {}

  async upsertNode(n: NodeRecord): Promise<void> { return this.current().upsertNode(n); }
  async getNode(name: string): Promise<NodeRecord | undefined> { return this.current().getNode(name); }
  async listNodes(): Promise<NodeRecord[]> { return this.current().listNodes(); }
  async putNodeModule(r: NodeModuleRecord): Promise<void> { return this.current().putNodeModule(r); }
  async listNodeModules(filter?: { node?: string; module?: string }): Promise<NodeModuleRecord[]> { return this.current().listNodeModules(filter); }
  async putAssignment(a: AssignmentRecord): Promise<void> { return this.current().putAssignment(a); }
  async listAssignments(filter?: { node?: string; module?: string }): Promise<AssignmentRecord[]> { return this.current().listAssignments(filter); }
  async deleteAssignment(node: string, module: string): Promise<void> { return this.current().deleteAssignment(node, module); }
  async putRevision(r: RevisionRecord): Promise<void> { return this.current().putRevision(r); }
  async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> { return this.current().getRevision(module, revision); }
  async latestRevision(module: string): Promise<RevisionRecord | undefined> { return this.current().latestRevision(module); }
  async latestRevisionNumber(module: string): Promise<number | undefined> { return this.current().latestRevisionNumber(module); }
  async listRevisions(module: string): Promise<RevisionRecord[]> { return this.current().listRevisions(module); }
  async markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void> { return this.current().markRevisionHealthy(module, revision, atMs); }
  async putRollout(r: RolloutRecord): Promise<void> { return this.current().putRollout(r); }
  async getRollout(id: string): Promise<RolloutRecord | undefined> { return this.current().getRollout(id); }
  async listRollouts(filter?: { module?: string; state?: RolloutState }): Promise<RolloutRecord[]> { return this.current().listRollouts(filter); }
  async latestRollout(module: string): Promise<RolloutRecord | undefined> { return this.current().latestRollout(module); }
  async appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord> { return this.current().appendEvent(e); }
  async listEvents(rolloutId: string): Promise<EventRecord[]> { return this.current().listEvents(rolloutId); }
  async putToken(t: TokenRecord): Promise<void> { return this.current().putToken(t); }
  async getToken(id: string): Promise<TokenRecord | undefined> { return this.current().getToken(id); }
  async listTokens(): Promise<TokenRecord[]> { return this.current().listTokens(); }
  async putNodeIdentity(r: NodeIdentityRecord): Promise<void> { return this.current().putNodeIdentity(r); }
  async getNodeIdentity(node: string): Promise<NodeIdentityRecord | undefined> { return this.current().getNodeIdentity(node); }
  async listNodeIdentities(): Promise<NodeIdentityRecord[]> { return this.current().listNodeIdentities(); }
  async putSecretVersion(r: SecretVersionRecord): Promise<void> { return this.current().putSecretVersion(r); }
  async listSecretVersions(name?: string): Promise<SecretVersionRecord[]> { return this.current().listSecretVersions(name); }
  async putSecretState(r: SecretStateRecord): Promise<void> { return this.current().putSecretState(r); }
  async getSecretState(name: string): Promise<SecretStateRecord | undefined> { return this.current().getSecretState(name); }
  async listSecretStates(): Promise<SecretStateRecord[]> { return this.current().listSecretStates(); }
  async close(): Promise<void> { /* the owner closes the real stores */ }
}
