import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // PGlite compiles its WebAssembly once per worker; sockets and servers need room too.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    env: { CDK_VALIDATION: 'false' },
  },
});
