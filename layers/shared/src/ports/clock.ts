/** Source of the current time (ms epoch); injected so tests and replays can control it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
