import type { ContainerSpec, HealthCheck } from '../../proto/types.js';

/**
 * Builders that fill every field of the wire types with its documented default, so
 * module definitions stay short and hashes stay stable (a missing field and a default
 * field hash the same because both become the default here).
 */
export function container(spec: Partial<ContainerSpec> & Pick<ContainerSpec, 'name' | 'image'>): ContainerSpec {
  return {
    args: [],
    env: {},
    volumes: [],
    networkMode: 'host',
    restartPolicy: 'unless-stopped',
    order: 0,
    entrypoint: '',
    ...spec,
  };
}

export function healthCheck(spec: Partial<HealthCheck> & Pick<HealthCheck, 'name' | 'kind'>): HealthCheck {
  return {
    host: '',
    port: 0,
    path: '',
    container: '',
    command: [],
    expectRole: '',
    minReplicas: 0,
    timeoutMs: 2000,
    sentinels: [],
    masterName: '',
    minSentinels: 0,
    ...spec,
  };
}
