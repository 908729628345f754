// ESLint: type-aware rules that catch what the compiler does not.
//  - no-floating-promises / no-misused-promises: a dropped promise in a reconcile loop
//    fails silently; every promise is awaited, returned, or explicitly `void`ed.
//  - agent/ and coordinator/ never import each other (both may import shared/ and proto/).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.testbed/**', 'proto/gen/**', '**/*.mjs', '**/*.cjs', 'eslint.config.js'] },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      'no-console': 'error',
    },
  },
  {
    files: ['agent/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/coordinator/**', '**/coordinator'], message: 'agent/ must not import coordinator/: share through shared/ or proto/' }] }],
    },
  },
  {
    files: ['coordinator/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/agent/**', '**/agent'], message: 'coordinator/ must not import agent/: share through shared/ or proto/' }] }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
);
