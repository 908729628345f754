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

export type HealthCheckKind = 'tcp' | 'http' | 'exec' | 'redis-role' | 'redis-replication' | 'redis-sentinel' | 'redis-setget' | 'redis-follower';

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
  /** redis-replication: the local Sentinel; redis-sentinel: every Sentinel ("host:port"). */
  sentinels: string[];
  masterName: string;
  minSentinels: number;
  /** redis-role: password from this credentials file ("redis.env")... */
  credentialsFile?: string;
  /** ...variable ("REDIS_PASSWORD"). */
  passwordVar?: string;
}

export interface RedisMasterFollower {
  masterName: string;
  sentinels: string[];
  runtimeSocket: string;
  backend: string;
  server: string;
  serverStateFile: string;
  reconcileIntervalMs: number;
  timeoutMs: number;
  /** Credentials file with REDIS_PASSWORD and REDIS_SENTINEL_PASSWORD; absent or "" = no auth. */
  credentialsFile?: string;
}

/** A reference to one version of one credentials file; never a value. */
export interface SecretRef { name: string; version: number; file: string }
/** A credentials-directory file the agent renders from a template and secret values. */
export interface SecretFile { file: string; mode: number; uid: number; gid: number; template: string }
/** The values of one secret version (CoordinatorMessage.secretValues only). */
export interface SecretValue { name: string; version: number; vars: Record<string, string> }

export interface ModuleState {
  module: string;
  revision: number;
  specHash: string;
  containers: ContainerSpec[];
  files: FileSpec[];
  healthChecks: HealthCheck[];
  /** Set only on nodes that run a follower; null (or absent) otherwise. */
  redisFollower?: RedisMasterFollower | null;
  /** Part of the spec hash when non-empty. Absent = none (states built before credentials existed). */
  secrets?: SecretRef[];
  secretFiles?: SecretFile[];
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

export interface ContainerActionResult { id: string; ok: boolean; error: string; doneAtMs: number; state: string }

export interface SecretsRequest { module: string; revision: number; specHash: string; reason: string }

/** Exactly one member is set (grpc-js also sets `msg` to the member's name). */
export interface AgentMessage {
  msg?: 'hello' | 'heartbeat' | 'health' | 'ack' | 'progress' | 'result' | 'containerActionResult' | 'secretsRequest';
  hello?: Hello;
  heartbeat?: Heartbeat;
  health?: HealthReport;
  ack?: PlanAck;
  progress?: ProgressEvent;
  result?: ApplyResult;
  containerActionResult?: ContainerActionResult;
  secretsRequest?: SecretsRequest;
}

export interface Ping { sentAtMs: number }
export interface Cancel { module: string; revision: number; reason: string }
export interface SessionSettings { heartbeatIntervalMs: number; healthIntervalMs: number }
export interface RemoveModule { module: string }
export type ContainerActionKind = 'stop' | 'kill' | 'pause' | 'start';
export interface ContainerAction { id: string; module: string; container: string; action: ContainerActionKind | string; holdMs: number }

export interface CoordinatorMessage {
  msg?: 'desired' | 'ping' | 'cancel' | 'settings' | 'remove' | 'containerAction';
  desired?: ModuleState;
  ping?: Ping;
  cancel?: Cancel;
  settings?: SessionSettings;
  remove?: RemoveModule;
  containerAction?: ContainerAction;
  /** Only with `desired`: the values of its SecretRefs. */
  secretValues?: SecretValue[];
}

export interface NodeModuleInfo { module: string; revision: number; healthy: boolean; summary: string }
export interface NodeInfo {
  name: string; role: string; subrole: string; ip: string;
  status: 'Ready' | 'NotReady' | 'Unknown' | string;
  agentVersion: string; modules: NodeModuleInfo[]; facts: NodeFacts | null; lastSeenMs: number; connected: boolean;
  certSerial: string; certNotAfterMs: number;
  containers: ContainerStatus[]; coordinator: string; connectedMs: number;
}
export interface ListNodesResponse { nodes: NodeInfo[] }

export interface PlanRequest { module: string; nodes: string[] }
export interface ContainerChange { name: string; action: string; fromImage: string; toImage: string; reasons: string[] }
export interface NodePlan {
  node: string; action: string; currentRevision: number; currentHash: string; desiredHash: string;
  containers: ContainerChange[]; connected: boolean;
  /** Credentials file changes, e.g. "redis.env version 1 -> 2". */
  credentials?: string[];
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

export interface RenewRequest { csrPem: string }
export interface RenewResponse { certificatePem: string; caPem: string; notAfterMs: number; serial: string }

export interface TokenInfo {
  id: string; createdMs: number; expiresMs: number; uses: number; used: number; node: string;
  state: 'valid' | 'expired' | 'used-up' | 'revoked' | string; description: string; usedBy: string[];
}
export interface CreateTokenRequest { ttlMs: number; uses: number; node: string; description: string }
export interface CreateTokenResponse { token: string; info: TokenInfo | null; installCommand: string }
export interface ListTokensResponse { tokens: TokenInfo[] }
export interface RemoveTokenRequest { id: string }
export interface RemoveTokenResponse { info: TokenInfo | null }
export interface DrillRequest {
  drill: string; mode: string; via: string; failoverTimeoutMs: number; healthyDeadlineMs: number; writeIntervalMs: number;
}
export interface DrillEvent { atMs: number; source: string; what: string }
export interface DrillReport {
  drill: string; mode: string; ok: boolean; error: string;
  oldMasterNode: string; oldMaster: string; newMasterNode: string; newMaster: string; proxy: string;
  promotionMs: number; switchMs: number; writeOutageMs: number;
  writesAcked: number; writesLost: number; writesFailed: number;
  rejoinMs: number; healthyAfter: boolean; timeline: DrillEvent[];
  startedMs: number; finishedMs: number; failedAtMs: number; switchMasterAtMs: number;
  firstAckNewAtMs: number; lastAckOldAtMs: number; returnedToOld: boolean;
}
export interface DrillUpdate { msg?: 'event' | 'report'; event?: DrillEvent; report?: DrillReport }
export interface HealthRequest { module: string }
export interface NodeHealth { node: string; connected: boolean; modules: ModuleHealth[]; observedAtMs: number }
export interface HealthResponse { nodes: NodeHealth[] }

export interface SecretVersionInfo {
  name: string; file: string; version: number; state: string; source: string; createdMs: number;
  nodes: string[]; varNames: string[]; pendingNodes: string[];
}
export interface SecretRotationInfo {
  name: string; fromVersion: number; toVersion: number; phase: string; state: string; error: string;
  rollouts: string[]; startedMs: number; updatedMs: number;
}
export interface ListSecretsResponse { versions: SecretVersionInfo[]; rotations: SecretRotationInfo[] }
export interface ImportedSecret { name: string; vars: Record<string, string>; sourceFile: string }
export interface ImportSecretsRequest { secrets: ImportedSecret[]; force: boolean; dryRun: boolean }
export interface ImportSecretResult { name: string; action: string; version: number; message: string }
export interface ImportSecretsResponse { results: ImportSecretResult[] }
export interface RotateSecretRequest { name: string; maxParallel: number; healthyDeadlineMs: number; minHealthyTimeMs: number; wait: boolean }
export interface RotateSecretUpdate { msg?: 'info' | 'event'; info?: SecretRotationInfo; event?: RolloutEvent }

export interface ReplicaInfo { id: string; name: string; address: string; leader: boolean; startedMs: number; pid: number }
/** Roles of a coordinator replica: see coordinator/ha/runtime.ts. */
export type CoordinatorRole = 'single' | 'starting' | 'follower' | 'leader' | 'isolated' | 'stopped';
export interface CoordinatorStatusResponse {
  id: string; name: string; address: string; role: CoordinatorRole | string; store: 'sqlite' | 'etcd' | string;
  storeOk: boolean; storeError: string; leaderId: string; leaderName: string; leaderAddress: string; term: number;
  leaderSinceMs: number; steppedDownMs: number; lastLeaderWriteRevision: number; refusedWrites: number;
  leaseTtlMs: number; pid: number; replicas: ReplicaInfo[]; version: string; sessions: number;
}
export interface CoordinatorDrillRequest { action: 'kill' | 'isolate' | string; expectReplica: string; isolateMs?: number }
export interface CoordinatorDrillResponse { id: string; name: string; address: string; pid: number; killAtMs: number; term: number }
