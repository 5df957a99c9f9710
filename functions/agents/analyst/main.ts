// Lambda entry of the agent run's analyst step: thin, the step itself is layers/shared/src/agents/agent-steps.ts.
import { withAgentSteps } from '../runtime.js';

/** Step Functions Map item: `{ runId, market }` -> `Analysis`. */
export const handler = (event: unknown) => withAgentSteps((steps) => steps.analystStep(event));
