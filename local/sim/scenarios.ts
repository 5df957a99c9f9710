/**
 * Scripted market scenarios: named shapes laid over one symbol's price path, so agents and alerts
 * can be tested against a market that does something on purpose (a breakout, a crash, a feed that
 * stops) instead of a random walk.
 *
 * A scenario is placed in time by the instant its move is complete (`endsAt`). With synthetic
 * history on, that defaults to the simulator's start: the move is already in the tape a backfill
 * pages through, and the live market goes on from where it ended. Without history it defaults to
 * the start plus the scenario's length: the move plays live. Either way the path is a seeded
 * function of (seed, symbol, time), like the rest of the simulator; a symbol without a scenario
 * prints exactly what it would without any.
 */
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import type { SimFaults } from './faults.js';
import type { PriceShape } from './history.js';

export const SCENARIO_NAMES = ['breakout', 'crash', 'stale_feed', 'limit_breach'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** setTimeout's longest delay; longer waits are re-armed */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What one scenario scripts, as figures tests can check against. */
export interface ScenarioScript {
  readonly name: ScenarioName;
  /** what it is meant to look like */
  readonly description: string;
  /** length of the move, ending at `endsAt` */
  readonly durationMs: number;
  /** a quiet range (the slow history cycles held still) this long before the move; 0 = none */
  readonly quietMs: number;
  /** price change over the move, percent (0 = none) */
  readonly movePct: number;
  /** the part of the move the price changes in, from its start (the rest holds the new level) */
  readonly moveMs: number;
  /** largest factor on the median trade size during the move */
  readonly peakVolumeFactor: number;
  /** the symbol prints nothing (trades, book, tickers) from the move's start on */
  readonly haltsFeed: boolean;
}

/** The scripts, by name. `limit_breach` is a breakout: the breach comes from the risk limits a test sets. */
export const SCENARIO_SCRIPTS: Readonly<Record<ScenarioName, ScenarioScript>> = {
  breakout: {
    name: 'breakout',
    description: 'a quiet range, then a sustained rise with rising volume',
    durationMs: 45 * MINUTE,
    quietMs: 6 * HOUR,
    movePct: 4,
    moveMs: 45 * MINUTE,
    peakVolumeFactor: 4,
    haltsFeed: false,
  },
  crash: {
    name: 'crash',
    description: 'a quiet range, then a sharp fall with a volume spike, holding near the low',
    durationMs: 15 * MINUTE,
    quietMs: 6 * HOUR,
    movePct: -8,
    moveMs: 5 * MINUTE,
    peakVolumeFactor: 6,
    haltsFeed: false,
  },
  stale_feed: {
    name: 'stale_feed',
    description: "the symbol's feed stops (no trades, book changes or tickers) while the others go on",
    durationMs: 30 * MINUTE,
    quietMs: 0,
    movePct: 0,
    moveMs: 0,
    peakVolumeFactor: 1,
    haltsFeed: true,
  },
  limit_breach: {
    name: 'limit_breach',
    description: 'a breakout on a second symbol; the breach itself comes from the risk limits',
    durationMs: 45 * MINUTE,
    quietMs: 6 * HOUR,
    movePct: 4,
    moveMs: 45 * MINUTE,
    peakVolumeFactor: 4,
    haltsFeed: false,
  },
};

/** One scenario on one symbol (MarketOptions.scenarios, `--scenario NAME:SYMBOL`). */
export interface ScenarioOptions {
  readonly name: ScenarioName;
  readonly symbol: string;
  /** ms epoch the move is complete at; default: the start with history on, start + duration without */
  readonly endsAt?: number;
}

/** A scenario placed in time, as the market runs it. */
export interface PlacedScenario {
  readonly name: ScenarioName;
  readonly symbol: string;
  readonly script: ScenarioScript;
  /** the move's start and end, ms epoch */
  readonly startsAt: number;
  readonly endsAt: number;
  readonly shape: PriceShape;
}

function isScenarioName(name: string): name is ScenarioName {
  return (SCENARIO_NAMES as readonly string[]).includes(name);
}

/** Parses `NAME:SYMBOL` (e.g. `breakout:BTC/USDT`); throws ConfigError naming what is wrong. */
export function parseScenario(spec: string): ScenarioOptions {
  const colon = spec.indexOf(':');
  const name = (colon < 0 ? spec : spec.slice(0, colon)).trim().toLowerCase();
  const symbol = colon < 0 ? '' : spec.slice(colon + 1).trim().toUpperCase();
  if (!isScenarioName(name)) throw new ConfigError(`unknown scenario "${name}", expected one of ${SCENARIO_NAMES.join(', ')} (as NAME:SYMBOL)`);
  if (symbol === '') throw new ConfigError(`scenario ${name} needs a symbol, e.g. ${name}:BTC/USDT`);
  return { name, symbol };
}

const clamp01 = (x: number): number => Math.min(1, Math.max(0, x));

/**
 * Places a scenario: where its move ends (or starts) when the options do not say.
 * Throws ConfigError for an unknown name or a bad `endsAt`.
 */
export function placeScenario(options: ScenarioOptions, otherwise: { readonly endsAt: number } | { readonly startsAt: number }): PlacedScenario {
  if (!isScenarioName(options.name)) throw new ConfigError(`unknown scenario "${String(options.name)}", expected one of ${SCENARIO_NAMES.join(', ')}`);
  const script = SCENARIO_SCRIPTS[options.name];
  const endsAt = options.endsAt ?? ('endsAt' in otherwise ? otherwise.endsAt : otherwise.startsAt + script.durationMs);
  if (!Number.isInteger(endsAt) || endsAt < 0) throw new ConfigError(`scenario ${options.name} endsAt must be a ms epoch, got ${endsAt}`);
  const startsAt = endsAt - script.durationMs;
  const logMove = Math.log1p(script.movePct / 100);
  const peak = script.peakVolumeFactor - 1;
  let volume: (u: number) => number;
  if (options.name === 'crash') {
    // the spike sits on the fall and fades over the minutes after it
    volume = (u) => (u < 0 ? 1 : 1 + peak * Math.exp(-Math.max(0, u - script.moveMs) / (5 * MINUTE)));
  } else if (script.movePct > 0) {
    // rises with the move, then fades back over a quarter hour
    volume = (u) => (u < 0 ? 1 : u <= script.durationMs ? 1 + peak * (u / script.durationMs) : 1 + peak * clamp01(1 - (u - script.durationMs) / (15 * MINUTE)));
  } else {
    volume = () => 1;
  }
  const shape: PriceShape = {
    offset: script.moveMs > 0 ? (ts) => logMove * clamp01((ts - startsAt) / script.moveMs) : () => 0,
    volume: (ts) => volume(ts - startsAt),
    ...(script.quietMs > 0 ? { quietFrom: startsAt - script.quietMs } : {}),
    ...(script.haltsFeed ? { haltFrom: startsAt } : {}),
  };
  return { name: options.name, symbol: options.symbol, script, startsAt, endsAt, shape };
}

/**
 * Withholds every market-data frame (tickers included) of the symbols whose scenario stops their
 * feed, from the moment it stops; the market itself already prints nothing for them. Returns a
 * function cancelling what has not happened yet.
 */
export function armScenarioFeeds(sim: {
  readonly market: { now(): number; placedScenarios(): readonly PlacedScenario[] };
  readonly faults: Pick<SimFaults, 'pauseStreams'>;
}): () => void {
  const timers = new Set<NodeJS.Timeout>();
  let disarmed = false;
  for (const s of sim.market.placedScenarios()) {
    const haltFrom = s.shape.haltFrom;
    if (haltFrom === undefined) continue;
    // checked again when due: the market's clock may not be the wall clock (tests move it by hand)
    const arm = (): void => {
      if (disarmed) return;
      const delay = haltFrom - sim.market.now();
      if (delay <= 0) {
        sim.faults.pauseStreams(s.symbol);
        return;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        arm();
      }, Math.min(delay, MAX_TIMER_MS)).unref();
      timers.add(timer);
    };
    arm();
  }
  return () => {
    disarmed = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };
}
