export * from './client.js';
export * from './endpoint.js';
export * from './oneshot.js';
export * from './sentinel.js';
export * from './writer.js';
