// Lambda entry of the agent run's risk step: thin, the step itself is layers/shared/src/agents/agent-steps.ts.
import { withAgentSteps } from '../runtime.js';

/** Step Functions task: `{ runId, analyses }` -> `{ runId, decisions }`. */
export const handler = (event: unknown) => withAgentSteps((steps) => steps.riskStep(event));
