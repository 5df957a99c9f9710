import { z } from 'zod';
import { ConfigError } from '../domain/errors.js';
import { formatIssues } from '../domain/index.js';
import { TimeframeSchema } from '../domain/timeframes.js';

/** `*` or an exact value: rules apply to one market, one exchange, one symbol everywhere, or all. */
const Match = (what: string, example: string) =>
  z
    .string()
    .trim()
    .min(1, `${what} must not be empty: use "*" for any`)
    .max(64)
    .default('*')
    .describe(`${what} the rule applies to (e.g. ${example}), or "*" for any`);

const RuleBase = {
  /** unique name: counters, the signal's rationale and cooldowns are keyed by it */
  id: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/i, 'a name of 1-64 letters, digits, "_", "." or "-"')
    .describe('unique rule name'),
  exchange: Match('exchange', 'binance').transform((s) => (s === '*' ? s : s.toLowerCase())),
  symbol: Match('symbol', 'BTC/USDT').transform((s) => s.toUpperCase()),
  /** after firing for a market, the rule stays quiet for that market this long */
  cooldownMs: z.number().int().min(0).max(86_400_000).default(300_000).describe('quiet time per market after a firing, ms'),
  /** horizon of the published signal; each kind has a default (see DEFAULT_HORIZON) */
  horizon: TimeframeSchema.optional(),
};

export const PriceCrossRuleSchema = z.strictObject({
  ...RuleBase,
  kind: z.literal('price_cross'),
  level: z.number().finite().positive().describe('price level, quote currency'),
  /** `up`: from below to at/above; `down`: from above to at/below */
  direction: z.enum(['up', 'down', 'either']).default('either'),
});

export const VolumeSpikeRuleSchema = z.strictObject({
  ...RuleBase,
  kind: z.literal('volume_spike'),
  /** the volume of the current window of this length is compared ... */
  windowMs: z.number().int().min(1_000).max(86_400_000).default(60_000),
  /** ... with the mean of this many preceding windows (empty ones count as 0) */
  trailingWindows: z.number().int().min(1).max(1_440).default(10),
  /** it fires when current > factor x trailing mean */
  factor: z.number().finite().gt(1).max(1_000).default(3),
});

export const SpreadBlowoutRuleSchema = z.strictObject({
  ...RuleBase,
  kind: z.literal('spread_blowout'),
  /** fires when (ask - bid) / mid exceeds this, in basis points */
  maxBps: z.number().finite().positive().max(10_000),
});

export const StaleFeedRuleSchema = z.strictObject({
  ...RuleBase,
  kind: z.literal('stale_feed'),
  /** fires when a market sent no event for this long (receipt time), checked on a timer */
  afterMs: z.number().int().min(1_000).max(86_400_000),
});

export const AlertRuleSchema = z.discriminatedUnion('kind', [PriceCrossRuleSchema, VolumeSpikeRuleSchema, SpreadBlowoutRuleSchema, StaleFeedRuleSchema]);

export const AlertRulesSchema = z
  .array(AlertRuleSchema)
  .max(500, 'at most 500 rules')
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    rules.forEach((r, i) => {
      if (seen.has(r.id)) ctx.addIssue({ code: 'custom', message: `duplicate rule id "${r.id}"`, path: [i, 'id'] });
      seen.add(r.id);
    });
  });

export type PriceCrossRule = z.infer<typeof PriceCrossRuleSchema>;
export type VolumeSpikeRule = z.infer<typeof VolumeSpikeRuleSchema>;
export type SpreadBlowoutRule = z.infer<typeof SpreadBlowoutRuleSchema>;
export type StaleFeedRule = z.infer<typeof StaleFeedRuleSchema>;
export type AlertRule = z.infer<typeof AlertRuleSchema>;
export type AlertRuleKind = AlertRule['kind'];
/** A rule as written in config: defaults may be left out. */
export type AlertRuleInput = z.input<typeof AlertRuleSchema>;

/** Signal horizon per kind when the rule names none: how long the condition is likely to matter. */
export const DEFAULT_HORIZON: Readonly<Record<AlertRuleKind, z.infer<typeof TimeframeSchema>>> = {
  price_cross: '15m',
  volume_spike: '5m',
  spread_blowout: '1m',
  stale_feed: '1m',
};

/** Validated rules from config (ALERT_RULES JSON text, or already parsed); ConfigError naming every bad field. */
export function parseAlertRules(config: unknown): AlertRule[] {
  let value = config;
  if (typeof config === 'string') {
    if (config.trim() === '') return [];
    try {
      value = JSON.parse(config);
    } catch (error) {
      throw new ConfigError(`alert rules are not JSON: ${(error as Error).message}`, { cause: error });
    }
  }
  const parsed = AlertRulesSchema.safeParse(value);
  if (!parsed.success) throw new ConfigError(`invalid alert rules: ${formatIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** True when `rule` watches the market (exact or wildcard match). */
export function ruleMatches(rule: AlertRule, exchange: string, symbol: string): boolean {
  return (rule.exchange === '*' || rule.exchange === exchange) && (rule.symbol === '*' || rule.symbol === symbol);
}
