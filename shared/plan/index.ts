export * from './hash.js';
export * from './builders.js';
