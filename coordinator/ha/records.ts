import type { ApplyResult, ProgressEvent } from '../../proto/types.js';

/**
 * Keys the replicas share in etcd besides the Store's records (all under the store
 * prefix, bound to the writing replica's lease unless noted):
 *
 *   leader                              LeaderRecord: the elected replica (its create revision is the term)
 *   replicas/<replica id>               ReplicaRecord: one per live replica process
 *   live/sessions/<node>/<replica id>   LiveSessionRecord: an agent session that replica holds
 *   live/agent-events/<node>            AgentEventRecord: the node's latest apply result or progress step
 *
 * Assignments (Store, not lease-bound) double as the leader's messages to agents: the
 * replica holding a node's session sends the node its new desired state when the
 * node's assignment changes.
 */
export const KEYS = {
  leader: ['leader'],
  replicas: ['replicas'],
  liveSessions: ['live', 'sessions'],
  agentEvents: ['live', 'agent-events'],
} as const;

export interface ReplicaRecord {
  id: string;
  name: string;
  address: string;
  pid: number;
  startedMs: number;
  version: string;
}

export interface LeaderRecord extends ReplicaRecord {
  sinceMs: number;
}

export interface LiveSessionRecord {
  node: string;
  replicaId: string;
  replicaName: string;
  replicaAddress: string;
  agentVersion: string;
  connectedMs: number;
  lastSeenMs: number;
  /** The holder's verdict: a message arrived within the NotReady threshold. */
  ready: boolean;
}

export interface AgentEventRecord {
  replicaId: string;
  node: string;
  atMs: number;
  result?: ApplyResult;
  progress?: ProgressEvent;
}
