-- get_signals (issue #8) reads signals newest first, keyset-paged on (ts, id), filtered by any of
-- exchange, symbol, publisher and direction. The primary key (ts, id) serves the unfiltered read;
-- an agent's usual questions ("signals on BTC/USDT", "what did agent X publish") get an index each,
-- in the read's own order, so a page is an index range scan however many other signals are held.
-- exchange and direction have few values: they filter inside these scans.
CREATE INDEX IF NOT EXISTS signals_symbol_ts ON signals (symbol, ts DESC, id DESC);
CREATE INDEX IF NOT EXISTS signals_publisher_ts ON signals (publisher, ts DESC, id DESC);
