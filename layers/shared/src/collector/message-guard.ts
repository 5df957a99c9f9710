/**
 * Keeps a malformed exchange frame from stopping feeds. ccxt.pro parses each WebSocket frame and
 * hands it to the exchange's handleMessage; when that throws, the client rejects every pending
 * watch of the connection, and a frame that is not valid JSON is passed on as a raw string (and
 * logged with console.log). The guard sits in front of handleMessage: it drops such frames,
 * reports them (with the market and channel they name, where they name one) and lets the good
 * frames through untouched.
 */
import type { FeedChannel } from '../domain/index.js';

/** A frame the exchange client could not use. */
export interface MalformedFrame {
  /** unified symbol the frame names, if any */
  readonly symbol: string | null;
  readonly channel: FeedChannel | null;
  /** the frame as received (string) or as parsed (JSON) */
  readonly sample: string;
  readonly error: string;
}

/** What the guard needs of a ccxt.pro exchange. */
export interface GuardedExchange {
  readonly id: string;
  handleMessage(client: unknown, message: unknown): unknown;
  log?: (...args: unknown[]) => void;
  readonly markets_by_id?: Record<string, readonly { readonly symbol: string }[] | undefined>;
}

/** Channel of a Binance event type (`e`) or an OKX channel name (`arg.channel`). */
function channelOf(name: string | undefined): FeedChannel | null {
  if (!name) return null;
  if (/^(trade|aggTrade|trades|trades-all)$/.test(name)) return 'trades';
  if (/^(24hrTicker|24hrMiniTicker|bookTicker|tickers)$/.test(name)) return 'tickers';
  if (/^(depthUpdate|books.*|bbo-tbt)$/.test(name)) return 'books';
  if (/^(kline|candle.*)$/.test(name)) return 'candles';
  if (/^(markPriceUpdate|funding-rate|open-interest)$/.test(name)) return 'funding';
  return null;
}

const FIELD = (name: string) => new RegExp(`"${name}"\\s*:\\s*"([^"]{1,64})"`);
const MARKET_FIELDS = [FIELD('s'), FIELD('instId'), FIELD('symbol')];
const CHANNEL_FIELDS = [FIELD('e'), FIELD('channel')];

/** Best effort: the market and channel a frame (parsed or raw text) names. */
export function attributeFrame(exchange: Pick<GuardedExchange, 'markets_by_id'>, frame: unknown): { symbol: string | null; channel: FeedChannel | null } {
  const text = typeof frame === 'string' ? frame : safeJson(frame);
  let marketId: string | undefined;
  for (const re of MARKET_FIELDS) marketId ??= re.exec(text)?.[1];
  let channelName: string | undefined;
  for (const re of CHANNEL_FIELDS) channelName ??= re.exec(text)?.[1];
  const symbol = marketId ? (exchange.markets_by_id?.[marketId]?.[0]?.symbol ?? null) : null;
  return { symbol, channel: channelOf(channelName) };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Wraps the exchange's handleMessage (before its first WebSocket client exists: ccxt.pro binds it
 * when it creates a client) and routes ccxt's own log lines to `log`. `handled` sees each frame
 * right after ccxt applied it (its books updated, its futures resolved but not yet run): what
 * ccxt does not check (e.g. OKX's book checksum) is checked there; a throw there is reported as
 * a malformed frame, never passed to ccxt.
 */
export function guardMessages(
  exchange: GuardedExchange,
  onMalformed: (frame: MalformedFrame) => void,
  log: (line: string) => void = () => undefined,
  handled?: (message: unknown) => void,
): void {
  const original = exchange.handleMessage.bind(exchange);
  const report = (frame: unknown, error: string) => {
    const { symbol, channel } = attributeFrame(exchange, frame);
    onMalformed({ symbol, channel, sample: typeof frame === 'string' ? frame : safeJson(frame), error });
  };
  exchange.handleMessage = (client: unknown, message: unknown) => {
    // ccxt parses frames that look like JSON; one still a string here did not parse
    if (typeof message === 'string' && /^\s*[[{]/.test(message)) {
      report(message, 'frame is not valid JSON');
      return undefined;
    }
    let result: unknown;
    try {
      result = original(client, message);
    } catch (error) {
      report(message, error instanceof Error ? `${error.name}: ${error.message}` : String(error));
      return undefined;
    }
    if (handled) {
      try {
        handled(message);
      } catch (error) {
        report(message, `after ccxt handled it: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      }
    }
    return result;
  };
  exchange.log = (...args: unknown[]) => log(args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : typeof a === 'string' ? a : safeJson(a))).join(' '));
}

/** A ccxt.pro WebSocket client, the parts the collector touches. */
export interface CcxtWsClient {
  send(message: unknown): Promise<unknown>;
  close(): unknown;
  reset?(error: unknown): void;
  /** set when the client failed; ccxt.pro's onClose then leaves the exchange's client map alone */
  error?: unknown;
  readonly connection?: { readonly readyState?: number };
  readonly futures?: object;
  readonly subscriptions?: object;
}

/** What guardSends needs of a ccxt.pro exchange. */
export interface ClientFactoryExchange {
  client(url: string): CcxtWsClient;
}

const GUARDED = Symbol('qicore.sendGuarded');

/**
 * ccxt.pro sends a subscription after its rate-limit throttle without handling the send's
 * rejection (ccxt 4.5 `watchMultiple`): when the socket closes in between, Node sees an unhandled
 * rejection, which ends a process. Every client's `send` gets a no-op rejection handler, so the
 * failure stays with whoever awaits it (the dead socket is found by the watch loop and the watchdog).
 */
export function guardSends(exchange: ClientFactoryExchange): void {
  const create = exchange.client.bind(exchange);
  exchange.client = (url: string) => {
    const client = create(url) as CcxtWsClient & { [GUARDED]?: true };
    if (!client[GUARDED]) {
      const send = client.send.bind(client);
      client.send = (message: unknown) => {
        const sent = send(message);
        sent.catch(() => undefined);
        return sent;
      };
      client[GUARDED] = true;
    }
    return client;
  };
}
