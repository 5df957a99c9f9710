// Lambda entry of the agent run's monitor step: thin, the step itself is layers/shared/src/agents/agent-steps.ts.
import { withAgentSteps } from '../runtime.js';

/** Step Functions task: `{ runId? }` -> `{ runId, report }` (writes run_start). */
export const handler = (event: unknown) => withAgentSteps((steps) => steps.monitorStep(event));
