export * from './catalog.js';
export * from './envfile.js';
export * from './template.js';
export * from './scan.js';
