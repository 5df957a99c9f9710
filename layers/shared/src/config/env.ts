import { z } from 'zod';
import { ConfigError } from '../domain/errors.js';
import { formatIssues } from '../domain/issues.js';

/** Parses `env` with `schema` at start-up; a missing or bad variable fails fast naming it. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${formatIssues(parsed.error.issues)}`);
  }
  return parsed.data;
}

export const LogLevelSchema = z.enum(['debug', 'info', 'warn', 'error']).default('info');

/** Environment of the store-writing consumers. */
export const ConsumerEnvSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'a postgres:// connection URL')
    .describe('PostgreSQL/TimescaleDB connection URL'),
  LOG_LEVEL: LogLevelSchema,
});
