import { describe, expect, it } from 'vitest';
import { ESLint } from 'eslint';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Proves the lint rules the project relies on actually fire: a floating promise and an
// import across agent/ <-> coordinator/ are errors. Uses real project files as the
// type-aware context (the text is linted in their place, nothing is written).
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// typescript-eslint switches to "single run" mode when CI is set and then lints the file on
// disk instead of the given text: turn that inference off for this test.
const eslint = new ESLint({
  cwd: root,
  overrideConfig: { languageOptions: { parserOptions: { disallowAutomaticSingleRunInference: true } } },
});

async function ruleIds(file: string, text: string): Promise<string[]> {
  const [result] = await eslint.lintText(text, { filePath: path.join(root, file) });
  return (result?.messages ?? []).map((m) => m.ruleId ?? m.message);
}

describe('lint rules', () => {
  it('rejects a floating promise', async () => {
    const ids = await ruleIds('agent/state.ts', 'async function f(): Promise<void> {}\nexport function g(): void { f(); }\n');
    expect(ids).toContain('@typescript-eslint/no-floating-promises');
  }, 60_000);

  it('rejects an agent/ -> coordinator/ import and the reverse', async () => {
    expect(await ruleIds('agent/state.ts', "import { Coordinator } from '../coordinator/coordinator.js';\nexport const c = Coordinator;\n")).toContain('no-restricted-imports');
    expect(await ruleIds('coordinator/inputs.ts', "import { Agent } from '../agent/agent.js';\nexport const a = Agent;\n")).toContain('no-restricted-imports');
  }, 60_000);

  it('accepts shared/ and proto/ imports from both sides', async () => {
    const ids = await ruleIds('agent/state.ts', "import { KB_VERSION } from '../shared/version.js';\nexport const v = KB_VERSION;\n");
    expect(ids).not.toContain('no-restricted-imports');
  }, 60_000);
});
