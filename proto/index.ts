/**
 * Loads the kb.v1 wire contract for grpc-js.
 *
 * The descriptor is the generated JSON form of proto/kb/v1/kb.proto (see
 * scripts/gen-proto.mjs), imported as a module so every bundle (and the single-binary
 * agent) carries it. Message objects use camelCase field names, int64 as JS numbers,
 * enums as strings, and every field present with its default (`defaults: true`).
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from './gen/kb.v1.json' with { type: 'json' };

export * from './types.js';

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  objects: false,
  oneofs: true,
};

interface KbV1 {
  AgentService: grpc.ServiceClientConstructor;
  ControlService: grpc.ServiceClientConstructor;
}

let cached: KbV1 | undefined;

/** Returns the kb.v1 services. Safe to call many times: the descriptor is parsed once. */
export function kbV1(): KbV1 {
  if (cached) return cached;
  const { ['//']: _generated, ...json } = descriptor as Record<string, unknown>;
  const def = protoLoader.fromJSON(json, LOADER_OPTIONS);
  directEncoders(def, protobuf.Root.fromJSON(json));
  const pkg = grpc.loadPackageDefinition(def) as unknown as { kb: { v1: KbV1 } };
  cached = pkg.kb.v1;
  return cached;
}

/**
 * Message objects are encoded as they are, without proto-loader's `fromObject` copy first.
 * That copy exists to coerce loosely typed input (enum names, numeric strings); kb's
 * messages are the typed objects of ./types.ts (no enums, int64 as numbers, bytes as
 * Buffers), which protobufjs encodes to the same bytes directly (test/unit/proto-encode.test.ts).
 * At thousands of sessions the copy was a third of the cost of every message sent. ADR 0020.
 */
function directEncoders(def: protoLoader.PackageDefinition, root: protobuf.Root): void {
  for (const [name, service] of Object.entries(def)) {
    if ('format' in service) continue; // a message or enum descriptor, not a service
    const svc = root.lookupService(name);
    for (const [method, m] of Object.entries(service as protoLoader.ServiceDefinition)) {
      const rpc = svc.methods[method]!.resolve() as protobuf.Method;
      m.requestSerialize = encoderOf(rpc.resolvedRequestType!);
      m.responseSerialize = encoderOf(rpc.resolvedResponseType!);
    }
  }
}

function encoderOf(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    const bytes = type.encode(value as protobuf.Message).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * Channel and server options shared by every kb endpoint.
 * Maximum message sizes are set on purpose: a module state with files is small
 * (kilobytes); 4 MiB leaves room for large configuration files while bounding memory.
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * HTTP/2 keepalive for the agent session. The agent pings every 20 s and gives the
 * coordinator 10 s to answer, so a dead coordinator (or a cut network) is noticed
 * within ~30 s even when no message flows; the server permits pings that often.
 */
export const KEEPALIVE = {
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
} as const;

export const CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  ...KEEPALIVE,
} as const;

export const SERVER_OPTIONS = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // channelz (grpc-js's introspection service) is not served: without it, grpc-js keeps no
  // per-connection trace and call counters, which matters with thousands of agent sessions.
  'grpc.enable_channelz': 0,
} as const;
