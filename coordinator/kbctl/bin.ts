#!/usr/bin/env node
// kbctl executable: runs the CLI and exits with its code.
import { main } from './main.js';

void main(process.argv).then((code) => process.exit(code));
