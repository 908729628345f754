/**
 * TypeScript shapes of the kb.v1 messages as grpc-js delivers them with the loader
 * options in ./index.ts (camelCase, int64 as number, bytes as Buffer, defaults filled).
 * Hand-written mirror of proto/kb/v1/kb.proto: keep the two in step (test/unit/proto.test.ts
 * round-trips every message through the real codec).
 */

export interface VolumeMount { hostPath: string; containerPath: string; readOnly: boolean }

export interface ContainerSpec {
  name: string;
  image: string;
  args: string[];
  env: Record<string, string>;
  volumes: VolumeMount[];
  networkMode: string;
  restartPolicy: string;
  order: number;
  entrypoint: string;
}

export interface FileSpec { path: string; mode: number; content: Buffer }

export type HealthCheckKind = 'tcp' | 'http' | 'exec' | 'redis-role';

export interface HealthCheck {
  name: string;
  kind: HealthCheckKind | string;
  host: string;
  port: number;
  path: string;
  container: string;
  command: string[];
  expectRole: string;
  minReplicas: number;
  timeoutMs: number;
}

export interface ModuleState {
  module: string;
  revision: number;
  specHash: string;
  containers: ContainerSpec[];
  files: FileSpec[];
  healthChecks: HealthCheck[];
}

export interface AppliedModule { module: string; revision: number; specHash: string }
export interface Hello { nodeName: string; agentVersion: string; desired: AppliedModule[] }
export interface Heartbeat { sentAtMs: number }

export interface NodeFacts {
  cpuPercent: number;
  memTotalBytes: number;
  memUsedBytes: number;
  diskTotalBytes: number;
  diskUsedBytes: number;
  dockerVersion: string;
  uptimeS: number;
  os: string;
}

export interface ContainerStatus {
  module: string; name: string; id: string; state: string; image: string; imageId: string;
  /** Engine StartedAt (RFC 3339) of the container; '' when unknown or missing. */
  startedAt: string;
}
export interface CheckResult { name: string; ok: boolean; observed: string }
export interface ModuleHealth {
  module: string; revision: number; specHash: string; healthy: boolean; checks: CheckResult[]; converged: boolean;
}
export interface HealthReport {
  facts: NodeFacts | null;
  modules: ModuleHealth[];
  containers: ContainerStatus[];
  observedAtMs: number;
}
export interface PlanAck { module: string; revision: number; specHash: string }
export interface ProgressEvent { module: string; revision: number; step: string; message: string }
export interface ApplyResult {
  module: string; revision: number; specHash: string; ok: boolean; error: string; changed: boolean; actions: string[];
}

/** Exactly one member is set (grpc-js also sets `msg` to the member's name). */
export interface AgentMessage {
  msg?: 'hello' | 'heartbeat' | 'health' | 'ack' | 'progress' | 'result';
  hello?: Hello;
  heartbeat?: Heartbeat;
  health?: HealthReport;
  ack?: PlanAck;
  progress?: ProgressEvent;
  result?: ApplyResult;
}

export interface Ping { sentAtMs: number }
export interface Cancel { module: string; revision: number; reason: string }
export interface SessionSettings { heartbeatIntervalMs: number; healthIntervalMs: number }
export interface RemoveModule { module: string }

export interface CoordinatorMessage {
  msg?: 'desired' | 'ping' | 'cancel' | 'settings' | 'remove';
  desired?: ModuleState;
  ping?: Ping;
  cancel?: Cancel;
  settings?: SessionSettings;
  remove?: RemoveModule;
}

export interface NodeModuleInfo { module: string; revision: number; healthy: boolean; summary: string }
export interface NodeInfo {
  name: string; role: string; subrole: string; ip: string;
  status: 'Ready' | 'NotReady' | 'Unknown' | string;
  agentVersion: string; modules: NodeModuleInfo[]; facts: NodeFacts | null; lastSeenMs: number; connected: boolean;
  containers: ContainerStatus[]; coordinator: string; connectedMs: number;
}
export interface ListNodesResponse { nodes: NodeInfo[] }

export interface PlanRequest { module: string; nodes: string[] }
export interface ContainerChange { name: string; action: string; fromImage: string; toImage: string; reasons: string[] }
export interface NodePlan {
  node: string; action: string; currentRevision: number; currentHash: string; desiredHash: string;
  containers: ContainerChange[]; connected: boolean;
}
export interface PlanResponse { module: string; nodes: NodePlan[]; images: Record<string, string> }

export interface RolloutRequest {
  module: string; maxParallel: number; healthyDeadlineMs: number; minHealthyTimeMs: number; undo: boolean; wait: boolean;
}
export interface RolloutEvent {
  id: number; rolloutId: string; atMs: number; node: string; kind: string; message: string; check: string; observed: string; revision: number;
}
export interface RolloutNodeState { node: string; state: string; revision: number; error: string }
export interface RolloutInfo {
  id: string; module: string; revision: number; fromRevision: number; state: string; error: string;
  failedNode: string; failedCheck: string; observed: string; nodes: RolloutNodeState[];
  createdMs: number; updatedMs: number; maxParallel: number;
}
export interface RolloutUpdate { msg?: 'event' | 'info'; event?: RolloutEvent; info?: RolloutInfo }
export interface RolloutStatusRequest { module: string; events: boolean }
export interface RolloutStatusResponse { rollout: RolloutInfo | null; events: RolloutEvent[] }

export interface ReplicaInfo { id: string; name: string; address: string; leader: boolean; startedMs: number; pid: number }
/** Roles of a coordinator replica: see coordinator/ha/runtime.ts. */
export type CoordinatorRole = 'single' | 'starting' | 'follower' | 'leader' | 'isolated' | 'stopped';
export interface CoordinatorStatusResponse {
  id: string; name: string; address: string; role: CoordinatorRole | string; store: 'sqlite' | 'etcd' | string;
  storeOk: boolean; storeError: string; leaderId: string; leaderName: string; leaderAddress: string; term: number;
  leaderSinceMs: number; steppedDownMs: number; lastLeaderWriteRevision: number; refusedWrites: number;
  leaseTtlMs: number; pid: number; replicas: ReplicaInfo[]; version: string; sessions: number;
}
export interface DrillRequest { action: 'kill' | string; expectReplica: string }
export interface DrillResponse { id: string; name: string; address: string; pid: number; killAtMs: number; term: number }
