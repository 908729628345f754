#!/usr/bin/env node
// kbctl executable: runs the CLI and exits with its code.
import { silenceIpServernameWarning } from '../../shared/tls/warnings.js';
import { main } from './main.js';

silenceIpServernameWarning();

void main(process.argv).then((code) => process.exit(code));
