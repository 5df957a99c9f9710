// Lambda entry of the agent run's execute step: thin, the step itself is layers/shared/src/agents/agent-steps.ts.
import { withAgentSteps } from '../runtime.js';

/** Step Functions task: `{ runId, decisions }` -> `{ runId, executions, summary }` (writes run_end). */
export const handler = (event: unknown) => withAgentSteps((steps) => steps.executeStep(event));
