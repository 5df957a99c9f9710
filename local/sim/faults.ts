/**
 * Fault injection for the simulated exchange. Every market-data frame any protocol sends goes
 * through `FaultController.deliver`, so every protocol gets every fault: skipped trades, book
 * sequence gaps, duplicated, reordered and malformed frames, corrupted checksums and silent
 * stalls; plus dropped connections and REST errors. Each fault can be armed one-shot ("the next
 * N matching frames") or switched on continuously by a seeded chaos mode. The printed trade
 * record (`SimulatedMarket.printedTrades`) is never touched: a withheld trade stays in REST.
 */
import type { WebSocket } from 'ws';
import { ConfigError } from '../../layers/shared/src/domain/errors.js';
import { Prng } from './prng.js';

/** What a market-data frame carries; faults pick frames by kind. */
export type FrameKind = 'trade' | 'bookDelta' | 'bookSnapshot' | 'ticker' | 'candle' | 'funding';

/** One market-data frame a protocol is about to send on one connection. */
export interface MarketFrame {
  readonly kind: FrameKind;
  /** unified symbol the frame is about; '' for frames covering several symbols */
  readonly symbol: string;
  readonly text: string;
  /** an identifier for the fault log, e.g. the trade id */
  readonly ref?: string;
  /** the same frame with a schema-breaking field (e.g. a trade price "abc"), sent as an extra frame */
  readonly schemaBreak?: () => string;
  /** the same frame with a wrong checksum (only protocols whose book frames carry one) */
  readonly badChecksum?: () => string;
}

/** What protocols call on the hot path; the server's FaultController implements it. */
export interface FaultHooks {
  /** Sends one market-data frame on `socket`, applying whatever faults are armed. */
  deliver(socket: WebSocket, frame: MarketFrame): void;
}

/** Limits a fault to one protocol (mount id) and/or one symbol; omitted = any. */
export interface FaultTarget {
  readonly protocol?: string;
  readonly symbol?: string;
}

/** A fault target that may also pick frames by kind. */
export interface FrameFaultTarget extends FaultTarget {
  readonly kind?: FrameKind;
}

export type MalformedShape = 'text' | 'schema';
const MALFORMED_SHAPES: readonly MalformedShape[] = ['text', 'schema'];

/** Continuous faults: per-frame probabilities and timer periods. Omitted = off. */
export interface ChaosOptions {
  /** seed of the fault decisions (default: the market seed) */
  readonly seed?: number;
  /** terminate every open WebSocket this often */
  readonly dropEveryMs?: number;
  /** per trade frame: withhold it (the client sees a trade-id gap; REST still serves the trade) */
  readonly tradeSkipRate?: number;
  /** per book-delta frame: withhold it (the client sees a sequence gap) */
  readonly bookGapRate?: number;
  /** per frame: send it twice */
  readonly duplicateRate?: number;
  /** per frame: send it after the next frame of the same connection */
  readonly reorderRate?: number;
  /** per frame: send an extra malformed frame before it */
  readonly malformedRate?: number;
  /** which malformed frames chaos sends (default both: half not JSON, half JSON that breaks the schema) */
  readonly malformedShapes?: readonly MalformedShape[];
  /** per frame that carries a checksum: corrupt it */
  readonly badChecksumRate?: number;
  /** every `stallEveryMs`, withhold all market data for `stallMs` (sockets stay open, pings answered) */
  readonly stallEveryMs?: number;
  readonly stallMs?: number;
  /** per REST request: answer 500 / 503 in the protocol's error format */
  readonly restErrorRate?: number;
  /** per REST request: answer 429 in the protocol's error format */
  readonly rest429Rate?: number;
}

/** Counts of what was injected since the simulator started. */
export interface InjectedFaultCounts {
  readonly droppedConnections: number;
  readonly skippedTrades: number;
  readonly bookGaps: number;
  readonly duplicated: number;
  readonly reordered: number;
  readonly malformed: number;
  readonly badChecksums: number;
  readonly stalls: number;
  /** market-data frames withheld by stalls and pauses */
  readonly stalledFrames: number;
  readonly restErrors: number;
  readonly rest429s: number;
}

export type FaultName = 'skipTrade' | 'bookGap' | 'duplicate' | 'reorder' | 'malformed' | 'badChecksum' | 'stall' | 'drop' | 'rest';

/** One injected fault, for tests that need to know exactly what was withheld or broken. */
export interface InjectedFault {
  readonly fault: FaultName;
  /** real time (ms epoch) */
  readonly at: number;
  readonly protocol?: string;
  readonly symbol?: string;
  /** the frame's ref (a trade id for trade frames), the REST status, or the number of sockets dropped */
  readonly ref?: string;
}

/** Fault injection controls for tests. */
export interface SimFaults {
  /** Terminates every open WebSocket (of one protocol when given), as a network drop would; resolves with how many were open once all are closed. */
  dropConnections(target?: { readonly protocol?: string }): Promise<number>;
  /** Withholds the next `count` trade frames: the client sees a trade-id gap that REST can fill. */
  skipTrades(count?: number, target?: FaultTarget): void;
  /** Withholds the next `count` book-delta frames of `symbol`, so clients see a sequence gap (Binance U/u, OKX prevSeqId). */
  skipDepthUpdate(symbol: string, count?: number, target?: { readonly protocol?: string }): void;
  /** Sends the next `count` matching frames twice. */
  duplicateFrames(count?: number, target?: FrameFaultTarget): void;
  /** Sends each of the next `count` matching frames after the frame that follows it on the same connection. */
  reorderFrames(count?: number, target?: FrameFaultTarget): void;
  /** Sends an extra malformed frame before each of the next `count` matching frames (never instead of one). */
  malformedFrames(count?: number, target?: FrameFaultTarget & { readonly shape?: MalformedShape }): void;
  /** Corrupts the checksum of the next `count` book frames that carry one (OKX). */
  corruptChecksums(count?: number, target?: FaultTarget): void;
  /** The next `count` REST calls fail with `status` (429 or 5xx) in the protocol's error format. */
  failNextRest(count: number, status?: number): void;
  /** Withholds market-data frames for `symbol` (all symbols when omitted) until resumed; sockets stay open. */
  pauseStreams(symbol?: string): void;
  resumeStreams(symbol?: string): void;
  /** A silent stall: no market data for `ms` (sockets stay open, pings answered), then delivery resumes. */
  stall(ms: number, symbol?: string): void;
  /** Switches continuous seeded faults on (replacing earlier chaos options). */
  chaos(options: ChaosOptions): void;
  /** Switches chaos off and clears every armed one-shot fault, pause and stall. */
  calm(): void;
  /** Counts of what was injected so far. */
  injected(): InjectedFaultCounts;
  /** The most recent injected faults (up to 10 000), oldest first. */
  injectedLog(): readonly InjectedFault[];
}

interface Armed {
  remaining: number;
  readonly protocol?: string;
  readonly symbol?: string;
  readonly kind?: FrameKind;
  readonly shape?: MalformedShape;
}

interface SocketState {
  held?: string;
  heldTimer?: NodeJS.Timeout;
}

type MutableCounts = { -readonly [K in keyof InjectedFaultCounts]: number };

const LOG_LIMIT = 10_000;
/** A frame held back for reordering is sent anyway after this long without a next frame. */
const REORDER_HOLD_MS = 200;

function emptyCounts(): MutableCounts {
  return {
    droppedConnections: 0,
    skippedTrades: 0,
    bookGaps: 0,
    duplicated: 0,
    reordered: 0,
    malformed: 0,
    badChecksums: 0,
    stalls: 0,
    stalledFrames: 0,
    restErrors: 0,
    rest429s: 0,
  };
}

function checkCount(what: string, count: number): void {
  if (!Number.isInteger(count) || count < 0) throw new ConfigError(`${what} count must be a non-negative integer, got ${count}`);
}

function checkRate(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value <= 1)) throw new ConfigError(`chaos ${name} must be a probability in [0, 1], got ${value}`);
}

function checkPeriod(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 1 && Number.isFinite(value))) throw new ConfigError(`chaos ${name} must be a number of ms >= 1, got ${value}`);
}

/** Half a frame: not parseable JSON, still starts like one. */
function truncated(text: string): string {
  return text.slice(0, Math.max(1, Math.floor(text.length / 2)));
}

/** Throws ConfigError naming the first out-of-range chaos option. */
export function checkChaosOptions(options: ChaosOptions): void {
  for (const key of ['tradeSkipRate', 'bookGapRate', 'duplicateRate', 'reorderRate', 'malformedRate', 'badChecksumRate', 'restErrorRate', 'rest429Rate'] as const) {
    checkRate(key, options[key]);
  }
  checkPeriod('dropEveryMs', options.dropEveryMs);
  checkPeriod('stallEveryMs', options.stallEveryMs);
  checkPeriod('stallMs', options.stallMs);
  if ((options.stallEveryMs === undefined) !== (options.stallMs === undefined)) {
    throw new ConfigError('chaos stallEveryMs and stallMs go together');
  }
  if (options.stallEveryMs !== undefined && options.stallMs! >= options.stallEveryMs) {
    throw new ConfigError(`chaos stallMs (${options.stallMs}) must be shorter than stallEveryMs (${options.stallEveryMs})`);
  }
  if ((options.restErrorRate ?? 0) + (options.rest429Rate ?? 0) > 1) throw new ConfigError('chaos restErrorRate + rest429Rate must not exceed 1');
  if (options.malformedShapes && (options.malformedShapes.length === 0 || options.malformedShapes.some((x) => !MALFORMED_SHAPES.includes(x)))) {
    throw new ConfigError(`chaos malformedShapes must be a non-empty list of ${MALFORMED_SHAPES.join(', ')}`);
  }
}

/**
 * The server's fault controller. `sockets` maps each open WebSocket to the id of the protocol
 * serving it; `drop` terminates sockets and resolves once they are closed.
 */
export class FaultController implements FaultHooks, SimFaults {
  private readonly armed: Record<'skipTrade' | 'bookGap' | 'duplicate' | 'reorder' | 'malformed' | 'badChecksum', Armed[]> = {
    skipTrade: [],
    bookGap: [],
    duplicate: [],
    reorder: [],
    malformed: [],
    badChecksum: [],
  };
  private readonly pausedSymbols = new Set<string>();
  private pausedAll = false;
  /** real-time ms until which market data is withheld, per symbol ('' = all) */
  private readonly stalls = new Map<string, number>();
  private restFailures: { count: number; status: number } = { count: 0, status: 500 };
  private chaosOptions: ChaosOptions | undefined;
  private rng: Prng;
  private readonly chaosTimers: NodeJS.Timeout[] = [];
  private readonly socketStates = new WeakMap<WebSocket, SocketState>();
  private readonly counts = emptyCounts();
  private readonly log: InjectedFault[] = [];
  /** true while any one-shot fault, pause, stall or chaos is active: the hot path skips all checks otherwise */
  private active = false;

  constructor(
    private readonly sockets: ReadonlyMap<WebSocket, string>,
    private readonly drop: (protocol: string | undefined) => Promise<number>,
    private readonly defaultSeed: number,
  ) {
    this.rng = new Prng(defaultSeed);
  }

  // -- controls ------------------------------------------------------------------------------

  async dropConnections(target: { readonly protocol?: string } = {}): Promise<number> {
    const n = await this.drop(target.protocol);
    this.counts.droppedConnections += n;
    this.record('drop', target.protocol, undefined, String(n));
    return n;
  }

  skipTrades(count = 1, target: FaultTarget = {}): void {
    this.arm('skipTrade', count, target);
  }

  skipDepthUpdate(symbol: string, count = 1, target: { readonly protocol?: string } = {}): void {
    this.arm('bookGap', count, { ...target, symbol });
  }

  duplicateFrames(count = 1, target: FrameFaultTarget = {}): void {
    this.arm('duplicate', count, target);
  }

  reorderFrames(count = 1, target: FrameFaultTarget = {}): void {
    this.arm('reorder', count, target);
  }

  malformedFrames(count = 1, target: FrameFaultTarget & { readonly shape?: MalformedShape } = {}): void {
    this.arm('malformed', count, target);
  }

  corruptChecksums(count = 1, target: FaultTarget = {}): void {
    this.arm('badChecksum', count, target);
  }

  failNextRest(count: number, status = 500): void {
    checkCount('failNextRest', count);
    if (status !== 429 && (status < 500 || status > 599)) throw new ConfigError(`failNextRest status must be 429 or 5xx, got ${status}`);
    this.restFailures = { count, status };
  }

  pauseStreams(symbol?: string): void {
    if (symbol === undefined) this.pausedAll = true;
    else this.pausedSymbols.add(symbol);
    this.active = true;
  }

  resumeStreams(symbol?: string): void {
    if (symbol === undefined) {
      this.pausedAll = false;
      this.pausedSymbols.clear();
    } else this.pausedSymbols.delete(symbol);
    this.refreshActive();
  }

  stall(ms: number, symbol?: string): void {
    if (!(ms >= 1 && Number.isFinite(ms))) throw new ConfigError(`stall needs a duration in ms >= 1, got ${ms}`);
    const key = symbol ?? '';
    this.stalls.set(key, Math.max(this.stalls.get(key) ?? 0, Date.now() + ms));
    this.counts.stalls++;
    this.record('stall', undefined, symbol, String(ms));
    this.active = true;
  }

  chaos(options: ChaosOptions): void {
    checkChaosOptions(options);
    this.stopChaosTimers();
    this.chaosOptions = options;
    this.rng = new Prng(options.seed ?? this.defaultSeed);
    if (options.dropEveryMs !== undefined) {
      this.chaosTimers.push(setInterval(() => void this.dropConnections().catch(() => undefined), options.dropEveryMs));
    }
    if (options.stallEveryMs !== undefined) {
      const stallMs = options.stallMs!;
      this.chaosTimers.push(setInterval(() => this.stall(stallMs), options.stallEveryMs));
    }
    for (const t of this.chaosTimers) t.unref();
    this.active = true;
  }

  calm(): void {
    this.stopChaosTimers();
    this.chaosOptions = undefined;
    for (const list of Object.values(this.armed)) list.length = 0;
    this.pausedAll = false;
    this.pausedSymbols.clear();
    this.stalls.clear();
    this.restFailures = { count: 0, status: 500 };
    this.active = false;
  }

  injected(): InjectedFaultCounts {
    return { ...this.counts };
  }

  injectedLog(): readonly InjectedFault[] {
    return [...this.log];
  }

  /** Stops chaos timers and releases held frames (server shutdown). */
  close(): void {
    this.stopChaosTimers();
  }

  // -- hot path ------------------------------------------------------------------------------

  /** Whether market data for `symbol` is withheld right now (pause or stall). */
  streamsPaused(symbol: string): boolean {
    if (this.pausedAll || this.pausedSymbols.has(symbol)) return true;
    if (this.stalls.size === 0) return false;
    const now = Date.now();
    for (const key of ['', symbol]) {
      const until = this.stalls.get(key);
      if (until === undefined) continue;
      if (now < until) return true;
      this.stalls.delete(key);
    }
    if (this.stalls.size === 0) this.refreshActive();
    return false;
  }

  deliver(socket: WebSocket, frame: MarketFrame): void {
    if (socket.readyState !== socket.OPEN) return;
    if (!this.active) {
      this.emit(socket, frame.text, false);
      return;
    }
    const protocol = this.sockets.get(socket) ?? '';
    if (this.streamsPaused(frame.symbol)) {
      this.counts.stalledFrames++;
      return;
    }
    const chaos = this.chaosOptions;
    if (frame.kind === 'trade' && (this.take('skipTrade', protocol, frame) || this.roll(chaos?.tradeSkipRate))) {
      this.counts.skippedTrades++;
      this.record('skipTrade', protocol, frame.symbol, frame.ref);
      return;
    }
    if (frame.kind === 'bookDelta' && (this.take('bookGap', protocol, frame) || this.roll(chaos?.bookGapRate))) {
      this.counts.bookGaps++;
      this.record('bookGap', protocol, frame.symbol, frame.ref);
      return;
    }
    let text = frame.text;
    if (frame.badChecksum && (this.take('badChecksum', protocol, frame) || this.roll(chaos?.badChecksumRate))) {
      text = frame.badChecksum();
      this.counts.badChecksums++;
      this.record('badChecksum', protocol, frame.symbol, frame.ref);
    }
    const malformed = this.takeArmed('malformed', protocol, frame);
    if (malformed || this.roll(chaos?.malformedRate)) {
      const shapes = chaos?.malformedShapes ?? MALFORMED_SHAPES;
      const shape = malformed?.shape ?? shapes[shapes.length === 1 ? 0 : this.rng.int(0, shapes.length - 1)];
      // an extra frame before the real one, never instead of it: the real data stays deliverable
      this.emit(socket, shape === 'schema' && frame.schemaBreak ? frame.schemaBreak() : truncated(frame.text), false);
      this.counts.malformed++;
      this.record('malformed', protocol, frame.symbol, frame.ref);
    }
    const hold = this.take('reorder', protocol, frame) || this.roll(chaos?.reorderRate);
    const duplicate = this.take('duplicate', protocol, frame) || this.roll(chaos?.duplicateRate);
    this.emit(socket, text, hold);
    if (duplicate) {
      this.emit(socket, text, false);
      this.counts.duplicated++;
      this.record('duplicate', protocol, frame.symbol, frame.ref);
    }
  }

  /** Status of an injected failure for this REST request, if one is due. */
  takeRestFailure(protocol: string): number | undefined {
    if (this.restFailures.count > 0) {
      this.restFailures.count--;
      return this.countRest(protocol, this.restFailures.status);
    }
    const chaos = this.chaosOptions;
    if (!chaos || (chaos.restErrorRate === undefined && chaos.rest429Rate === undefined)) return undefined;
    const r = this.rng.next();
    const p429 = chaos.rest429Rate ?? 0;
    if (r < p429) return this.countRest(protocol, 429);
    if (r < p429 + (chaos.restErrorRate ?? 0)) return this.countRest(protocol, this.rng.chance(0.5) ? 500 : 503);
    return undefined;
  }

  // -- internals -----------------------------------------------------------------------------

  private countRest(protocol: string, status: number): number {
    if (status === 429) this.counts.rest429s++;
    else this.counts.restErrors++;
    this.record('rest', protocol, undefined, String(status));
    return status;
  }

  private arm(name: keyof FaultController['armed'], count: number, target: Omit<Armed, 'remaining'>): void {
    checkCount(name, count);
    if (count === 0) return;
    this.armed[name].push({ remaining: count, ...target });
    this.active = true;
  }

  private takeArmed(name: keyof FaultController['armed'], protocol: string, frame: MarketFrame): Armed | undefined {
    const list = this.armed[name];
    if (list.length === 0) return undefined;
    const i = list.findIndex(
      (a) =>
        (a.protocol === undefined || a.protocol === protocol) &&
        (a.symbol === undefined || a.symbol === frame.symbol) &&
        (a.kind === undefined || a.kind === frame.kind),
    );
    if (i < 0) return undefined;
    const a = list[i]!;
    if (--a.remaining <= 0) {
      list.splice(i, 1);
      this.refreshActive();
    }
    return a;
  }

  private take(name: keyof FaultController['armed'], protocol: string, frame: MarketFrame): boolean {
    return this.takeArmed(name, protocol, frame) !== undefined;
  }

  private roll(rate: number | undefined): boolean {
    return rate !== undefined && rate > 0 && this.rng.chance(rate);
  }

  /** Sends `text`; with `hold`, keeps it back until the next frame of this socket has gone out. */
  private emit(socket: WebSocket, text: string, hold: boolean): void {
    let state = this.socketStates.get(socket);
    if (hold && state?.held === undefined) {
      if (!state) {
        state = {};
        this.socketStates.set(socket, state);
      }
      state.held = text;
      const held = state;
      held.heldTimer = setTimeout(() => this.releaseHeld(socket, held, false), REORDER_HOLD_MS);
      held.heldTimer.unref();
      return;
    }
    socket.send(text);
    if (state?.held !== undefined) this.releaseHeld(socket, state, true);
  }

  private releaseHeld(socket: WebSocket, state: SocketState, swapped: boolean): void {
    const text = state.held;
    clearTimeout(state.heldTimer);
    state.held = undefined;
    state.heldTimer = undefined;
    if (text === undefined || socket.readyState !== socket.OPEN) return;
    socket.send(text);
    if (swapped) {
      this.counts.reordered++;
      this.record('reorder', this.sockets.get(socket));
    }
  }

  private record(fault: FaultName, protocol?: string, symbol?: string, ref?: string): void {
    this.log.push({
      fault,
      at: Date.now(),
      ...(protocol ? { protocol } : {}),
      ...(symbol ? { symbol } : {}),
      ...(ref !== undefined ? { ref } : {}),
    });
    if (this.log.length > LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT);
  }

  private refreshActive(): void {
    this.active =
      this.chaosOptions !== undefined ||
      this.pausedAll ||
      this.pausedSymbols.size > 0 ||
      this.stalls.size > 0 ||
      Object.values(this.armed).some((list) => list.length > 0);
  }

  private stopChaosTimers(): void {
    for (const t of this.chaosTimers) clearInterval(t);
    this.chaosTimers.length = 0;
  }
}
