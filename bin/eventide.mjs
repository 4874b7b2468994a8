#!/usr/bin/env node
// The eventide command. Sources are TypeScript run through tsx, so the repository needs no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../dispatcher/cli.ts');
process.exitCode = await main(process.argv.slice(2));
