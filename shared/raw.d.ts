// Text files imported as strings (`import text from './file.sh?raw'`): vite/vitest natively,
// esbuild through the `raw` plugin in scripts/build.mjs.
declare module '*?raw' {
  const text: string;
  export default text;
}
