//! A synchronous write connection for the live recorder.
//!
//! The recorder books everything the live engine did (orders, fills with their position
//! updates, cancels, cursors, snapshots) in one transaction per batch. Through the async pool
//! each statement is a round trip to sqlx's connection thread, two context switches that cost
//! more than the statement; profiled under 10,000 ticks/s they were most of the process's CPU.
//! Here the recorder's own thread runs the statements in process (rusqlite, the same bundled
//! SQLite, on the same WAL database), so a fill costs microseconds.
//!
//! Fill booking lives only here: [`super::orders::record_fill`] runs this code too.

use rusqlite::{Connection, OptionalExtension, params};

use super::live::Cursor;
use super::orders::{FillRecord, NewOrder, Order, Position, status};
use super::{BUSY_TIMEOUT, Store, StoreError, StoreResult, now};
use crate::model::Bar;
use crate::portfolio::Portfolio;

/// The recorder's connection. Writes run inside a transaction that the first of them opens
/// ([`Writer::begin`]) and [`Writer::commit`] ends.
pub struct Writer {
    conn: Connection,
    store: Store,
    /// Whether the open transaction wrote instance rows (snapshots), which the catalog cache
    /// must learn once it commits.
    touches_catalog: bool,
}

impl Writer {
    /// Open a connection to `store`'s database file (WAL, `synchronous=NORMAL`, foreign keys,
    /// the store's busy timeout, as the pool's connections).
    pub fn open(store: &Store) -> StoreResult<Writer> {
        let conn = Connection::open(store.path())?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        // Room for every statement of the hot path, one cursor upsert per batch size among
        // them, so none is parsed again.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Writer {
            conn,
            store: store.clone(),
            touches_catalog: false,
        })
    }

    /// [`Writer::open`] for a writer on the hot path: its commits never run a WAL checkpoint
    /// (copying pages back into the database file takes milliseconds, and SQLite runs it in
    /// the connection whose commit crosses 1,000 pages); `checkpointer` runs them beside it.
    pub fn open_without_checkpoints(store: &Store) -> StoreResult<(Writer, Checkpointer)> {
        let w = Writer::open(store)?;
        w.conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let conn = Connection::open(store.path())?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok((w, Checkpointer::start(conn)))
    }

    /// Start a transaction that holds the write lock from its first statement, so it can
    /// never fail halfway on a lock another writer took after it started reading. Every
    /// write opens one when none is open, so a caller with nothing to write takes no lock.
    pub fn begin(&mut self) -> StoreResult<()> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.touches_catalog = false;
        }
        Ok(())
    }

    /// Whether a transaction is open (something was written since the last commit).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Rows inserted, updated or deleted through this connection so far.
    pub fn changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// Make everything since [`Writer::begin`] durable at once. If the commit fails the
    /// transaction is rolled back, so the next `begin` starts clean.
    pub fn commit(&mut self) -> StoreResult<()> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(e.into());
        }
        if self.touches_catalog {
            self.store.catalog_changed();
        }
        Ok(())
    }

    /// Store an order; its id.
    pub fn insert_order(&mut self, o: &NewOrder) -> StoreResult<i64> {
        self.begin()?;
        let t = now();
        let mut st = self
            .conn
            .prepare_cached(super::orders::INSERT_ORDER_PLAIN)?;
        st.execute(params![
            o.account,
            o.instance_id,
            o.user_id,
            o.symbol,
            o.side,
            o.order_type,
            o.quantity,
            o.limit_price,
            o.stop_price,
            o.time_in_force,
            o.take_profit,
            o.stop_loss,
            o.status,
            o.reason,
            o.tag,
            t,
            t
        ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Cancel a working order; whether it was working.
    pub fn cancel_order(&mut self, id: i64, reason: &str) -> StoreResult<bool> {
        self.begin()?;
        let mut st = self.conn.prepare_cached(super::orders::CANCEL_WORKING)?;
        Ok(st.execute(params![reason, now(), id])? > 0)
    }

    /// Book an execution of order `order_id`: the fill row, the order's filled quantity,
    /// average price and status, and the position (opened, grown, reduced, closed, or closed
    /// and reversed, with realized PnL kept apart from fees), all in this transaction.
    ///
    /// `Conflict` when the order is not working or the fill is larger than what is left.
    pub fn record_fill(
        &mut self,
        order_id: i64,
        quantity: f64,
        price: f64,
        fee: f64,
        ts: i64,
    ) -> StoreResult<FillRecord> {
        self.begin()?;
        if !(quantity.is_finite()
            && quantity > 0.0
            && price.is_finite()
            && price > 0.0
            && fee.is_finite()
            && fee >= 0.0)
        {
            return Err(StoreError::Conflict(format!(
                "fill of order {order_id} needs a positive quantity and price and a non-negative fee, got {quantity} @ {price} fee {fee}"
            )));
        }
        let order = self
            .conn
            .prepare_cached(super::orders::SELECT_ORDER)?
            .query_row([order_id], order_row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("order {order_id}")))?;
        if !order.is_working() {
            return Err(StoreError::Conflict(format!(
                "order {order_id} is {}, it cannot fill",
                order.status
            )));
        }
        let left = order.quantity - order.filled_qty;
        if quantity > left * (1.0 + 1e-9) {
            return Err(StoreError::Conflict(format!(
                "fill of {quantity} exceeds the {left} left of order {order_id}"
            )));
        }
        let signed = if order.side == "buy" {
            quantity
        } else {
            -quantity
        };
        let open = self
            .conn
            .prepare_cached(super::orders::SELECT_OPEN_POSITION)?
            .query_row(params![order.account, order.symbol], position_row)
            .optional()?;
        let mut book = Portfolio::new(vec![order.symbol.clone()].into(), 0.0);
        if let Some(p) = &open {
            book.apply_fill(0, p.quantity, p.avg_price, 0.0, p.opened_at);
        }
        // Fees are kept apart (the `fees` column), so realized PnL is the price move alone.
        book.apply_fill(0, signed, price, 0.0, ts);
        let after = book.position(0);
        let realized = book.realized();
        let t = now();
        let side_of = |q: f64| if q < 0.0 { "short" } else { "long" };

        let position_id = match &open {
            Some(p) if after.quantity == 0.0 || (after.quantity > 0.0) != (p.quantity > 0.0) => {
                // Flat, or through flat: this trade closes; a remainder opens the next one.
                let crossed = after.quantity != 0.0;
                let closing_fee = if crossed {
                    fee * p.quantity.abs() / quantity
                } else {
                    fee
                };
                self.conn
                    .prepare_cached(
                        "UPDATE positions SET quantity = 0, realized_pnl = realized_pnl + ?, fees = fees + ?, closed_at = ?, updated_at = ? WHERE id = ?",
                    )?
                    .execute(params![realized, closing_fee, ts, t, p.id])?;
                if crossed {
                    self.insert_position(
                        &order,
                        side_of(after.quantity),
                        after.quantity,
                        after.avg_price,
                        fee - closing_fee,
                        ts,
                    )?;
                }
                p.id
            }
            Some(p) => {
                self.conn
                    .prepare_cached(
                        "UPDATE positions SET quantity = ?, avg_price = ?, realized_pnl = realized_pnl + ?, fees = fees + ?, updated_at = ? WHERE id = ?",
                    )?
                    .execute(params![after.quantity, after.avg_price, realized, fee, t, p.id])?;
                p.id
            }
            None => self.insert_position(
                &order,
                side_of(after.quantity),
                after.quantity,
                after.avg_price,
                fee,
                ts,
            )?,
        };

        let filled = order.filled_qty + quantity;
        let avg = (order.avg_price.unwrap_or(0.0) * order.filled_qty + price * quantity) / filled;
        let new_status = if filled >= order.quantity * (1.0 - 1e-9) {
            status::FILLED
        } else {
            status::PARTIALLY_FILLED
        };
        self.conn
            .prepare_cached(
                "UPDATE orders SET filled_qty = ?, avg_price = ?, status = ?, updated_at = ? WHERE id = ?",
            )?
            .execute(params![filled, avg, new_status, t, order_id])?;
        self.conn
            .prepare_cached(
                "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts, position_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                order_id,
                order.account,
                order.symbol,
                order.side,
                quantity,
                price,
                fee,
                ts,
                position_id
            ])?;
        let fill_id = self.conn.last_insert_rowid();
        // The account's running totals, so reading its cash is not a pass over its fills.
        let trade_cash = if order.side == "buy" {
            -quantity * price
        } else {
            quantity * price
        };
        self.conn
            .prepare_cached(
                "INSERT INTO account_totals (account, trade_cash, fees, realized_pnl) VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET trade_cash = trade_cash + excluded.trade_cash, fees = fees + excluded.fees, realized_pnl = realized_pnl + excluded.realized_pnl",
            )?
            .execute(params![order.account, trade_cash, fee, realized])?;
        Ok(FillRecord {
            id: fill_id,
            order_id,
            position_id: Some(position_id),
            account: order.account,
            symbol: order.symbol,
            side: order.side,
            quantity,
            price,
            fee,
            ts,
            order_type: order.order_type,
            tag: order.tag,
            user_id: order.user_id,
        })
    }

    fn insert_position(
        &mut self,
        order: &Order,
        side: &str,
        quantity: f64,
        avg_price: f64,
        fees: f64,
        ts: i64,
    ) -> StoreResult<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO positions (account, symbol, side, quantity, avg_price, realized_pnl, fees, opened_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            )?
            .execute(params![
                order.account,
                order.symbol,
                side,
                quantity,
                avg_price,
                fees,
                ts,
                now()
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Move the live engine's stream cursors: one statement per [`CURSORS_PER_STATEMENT`]
    /// of them (one row at a time, the upserts cost nearly as much as the fills of a batch).
    pub fn save_cursors(&mut self, cursors: &[(String, Cursor)]) -> StoreResult<()> {
        if cursors.is_empty() {
            return Ok(());
        }
        self.begin()?;
        let t = now();
        for chunk in cursors.chunks(CURSORS_PER_STATEMENT) {
            let mut st = self
                .conn
                .prepare_cached(&super::live::upsert_cursors_sql(chunk.len()))?;
            let mut k = 1;
            for (symbol, c) in chunk {
                st.raw_bind_parameter(k, symbol)?;
                st.raw_bind_parameter(k + 1, c.seq)?;
                st.raw_bind_parameter(k + 2, c.ts)?;
                st.raw_bind_parameter(k + 3, c.close)?;
                st.raw_bind_parameter(k + 4, t)?;
                k += 5;
            }
            st.raw_execute()?;
        }
        Ok(())
    }

    /// Keep a strategy's snapshot, with the sequence number of the last bar it saw of each
    /// of its symbols.
    pub fn save_snapshot(
        &mut self,
        strategy_id: i64,
        state: &[u8],
        ts: i64,
        seqs: &[(String, u64)],
    ) -> StoreResult<()> {
        self.begin()?;
        let seqs: serde_json::Map<String, serde_json::Value> = seqs
            .iter()
            .map(|(s, q)| (s.clone(), serde_json::Value::from(*q)))
            .collect();
        let seqs = serde_json::Value::Object(seqs).to_string();
        self.conn
            .prepare_cached(
                "UPDATE strategy_instances SET last_snapshot = ?, snapshot_at = ?, snapshot_seqs = ? WHERE strategy_id = ?",
            )?
            .execute(params![state, ts, seqs, strategy_id])?;
        self.touches_catalog = true;
        Ok(())
    }

    /// Journal bars the engine handled (symbol, sequence number, bar) as one entry; its id.
    pub fn save_bars(&mut self, bars: &[(String, u64, Bar)]) -> StoreResult<i64> {
        self.begin()?;
        self.conn
            .prepare_cached("INSERT INTO live_journal (bars) VALUES (?)")?
            .execute(params![super::live::encode_bars(bars)])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Drop the journal entries up to `id`: no running instance needs their bars.
    pub fn prune_bars(&mut self, id: i64) -> StoreResult<()> {
        self.begin()?;
        self.conn
            .prepare_cached("DELETE FROM live_journal WHERE id <= ?")?
            .execute(params![id])?;
        Ok(())
    }
}

/// Prepared statements a writer keeps.
const STATEMENT_CACHE: usize = 128;

/// Most cursors one upsert statement moves (5 parameters each).
const CURSORS_PER_STATEMENT: usize = 64;

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on its own thread, passively (it never
/// waits for or blocks writers), until dropped.
pub struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often [`Checkpointer`] runs.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Checkpointer {
    fn start(conn: Connection) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("qtm-wal-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
            })
            .ok();
        Checkpointer {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Order> {
    Ok(Order {
        id: r.get(0)?,
        account: r.get(1)?,
        instance_id: r.get(2)?,
        user_id: r.get(3)?,
        symbol: r.get(4)?,
        side: r.get(5)?,
        order_type: r.get(6)?,
        quantity: r.get(7)?,
        limit_price: r.get(8)?,
        stop_price: r.get(9)?,
        time_in_force: r.get(10)?,
        take_profit: r.get(11)?,
        stop_loss: r.get(12)?,
        status: r.get(13)?,
        filled_qty: r.get(14)?,
        avg_price: r.get(15)?,
        reason: r.get(16)?,
        tag: r.get(17)?,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
    })
}

fn position_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Position> {
    Ok(Position {
        id: r.get(0)?,
        account: r.get(1)?,
        symbol: r.get(2)?,
        side: r.get(3)?,
        quantity: r.get(4)?,
        avg_price: r.get(5)?,
        realized_pnl: r.get(6)?,
        fees: r.get(7)?,
        opened_at: r.get(8)?,
        closed_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(seq: i64) -> Cursor {
        Cursor {
            seq,
            ts: 1_000 + seq,
            close: 10.0 + seq as f64,
        }
    }

    #[tokio::test]
    async fn cursors_are_inserted_and_moved_many_per_statement() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let mut w = Writer::open(&store).unwrap();
        // More than one statement's worth, then a few moved and one new.
        let first: Vec<(String, Cursor)> = (0..CURSORS_PER_STATEMENT as i64 + 6)
            .map(|i| (format!("S{i}"), cursor(i)))
            .collect();
        w.save_cursors(&first).unwrap();
        w.commit().unwrap();
        w.save_cursors(&[
            ("S1".into(), cursor(500)),
            ("S3".into(), cursor(700)),
            ("NEW".into(), cursor(9)),
        ])
        .unwrap();
        w.commit().unwrap();
        let stored = crate::store::live::cursors(&store).await.unwrap();
        assert_eq!(stored.len(), first.len() + 1);
        assert_eq!(stored["S0"], cursor(0));
        assert_eq!(stored["S1"], cursor(500));
        assert_eq!(stored["S3"], cursor(700));
        assert_eq!(stored["NEW"], cursor(9));
        let last = format!("S{}", CURSORS_PER_STATEMENT + 5);
        assert_eq!(stored[&last], cursor(CURSORS_PER_STATEMENT as i64 + 5));
    }
}
