#!/usr/bin/env node
// The `node-agent` executable as pnpm links it: a file that exists before the build, so that
// `pnpm install` on a fresh clone can link it (dist/ appears only after `pnpm build`).
import '../dist/main.js';
