export * from './x509.js';
export * from './x509-make.js';
export * from './token.js';
export * from './files.js';
export * from './warnings.js';
