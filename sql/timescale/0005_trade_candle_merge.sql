-- The fast path of the writer's 1m trade candles (PostgresMarketStore, COPY path): one call that
-- upserts the candles of the minutes a batch of NEW trades touched, then refreshes their hours
-- and days of candle_rollups (0004).
--
-- Why no re-read of the batch: the writer COPYs a batch straight into trades, and a COPY fails on
-- any key stored before (the writer then takes its replay path, which rebuilds the candles from
-- stored trades as before). So after a COPY that went through, a touched minute holds exactly
-- what it held before the batch plus the batch. The writer passes, per minute, both merged:
--   trades, high, low  - the stored trades' (read just before the COPY) with the batch's;
--   volume             - sum(amount::numeric) over the stored trades and the batch, exact, as
--                        numeric text (summed by the client, see pg-numeric-sum.ts).
-- Open and close are the minute's first and last stored trade in the trade order
-- (ts, length(trade_id), trade_id), found by index: the first (last) time, then the id order
-- among the trades at that time. That is what the rebuild computes, row for row, with the same
-- single rounding of the exact volume to float8.

CREATE OR REPLACE FUNCTION merge_trade_candles(minutes jsonb, hours jsonb) RETURNS void
  LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO candles (exchange, symbol, timeframe, ts, source, open, high, low, close, volume, trades)
  SELECT k.exchange, k.symbol, '1m', ms_to_ts(k.minute), 'trades', o.price, k.high, k.low, c.price,
         k.volume::float8, k.trades
  FROM jsonb_to_recordset(minutes) AS k(exchange text, symbol text, minute bigint, trades int, high float8,
    low float8, volume numeric)
  CROSS JOIN LATERAL (
    SELECT t.price FROM trades t
    WHERE t.exchange = k.exchange AND t.symbol = k.symbol
      AND t.ts = (SELECT min(f.ts) FROM trades f
                  WHERE f.exchange = k.exchange AND f.symbol = k.symbol
                    AND f.ts >= ms_to_ts(k.minute) AND f.ts < ms_to_ts(k.minute + 60000))
    ORDER BY length(t.trade_id), t.trade_id LIMIT 1
  ) o
  CROSS JOIN LATERAL (
    SELECT t.price FROM trades t
    WHERE t.exchange = k.exchange AND t.symbol = k.symbol
      AND t.ts = (SELECT max(l.ts) FROM trades l
                  WHERE l.exchange = k.exchange AND l.symbol = k.symbol
                    AND l.ts >= ms_to_ts(k.minute) AND l.ts < ms_to_ts(k.minute + 60000))
    ORDER BY length(t.trade_id) DESC, t.trade_id DESC LIMIT 1
  ) c
  ON CONFLICT (exchange, symbol, timeframe, ts, source) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades;

  PERFORM refresh_candle_rollups(hours);
END
$$;
