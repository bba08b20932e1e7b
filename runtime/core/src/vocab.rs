//! The order vocabulary every layer speaks: an order's status, the side of an order and of a
//! position, and whose account it is. The engine, the store and the API use these types; their
//! text forms (`accepted`, `buy`, `long`, `strategy:7`) are what the database holds and the
//! API shows, written and read only here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Side;

/// A text form that names none of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was being read (`order status`, `side`, …).
    pub kind: &'static str,
    /// The text, cut to 64 characters.
    pub text: String,
    /// The values it may be.
    pub expected: &'static str,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}: expected {}",
            self.kind, self.text, self.expected
        )
    }
}

impl std::error::Error for UnknownValue {}

fn unknown(kind: &'static str, text: &str, expected: &'static str) -> UnknownValue {
    UnknownValue {
        kind,
        text: text.chars().take(64).collect(),
        expected,
    }
}

/// Text forms for a vocabulary type: `Display`/`FromStr`, `TryFrom<String>` (what the store's
/// row decoding uses), and serde as the text.
macro_rules! text_form {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text())
            }
        }
        impl TryFrom<String> for $t {
            type Error = UnknownValue;
            fn try_from(s: String) -> Result<Self, UnknownValue> {
                s.parse()
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.text())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Where an order stands, from placement to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Placed by a strategy and not yet seen by the exchange (within the bar it was placed).
    Pending,
    /// Accepted and working, nothing filled yet (a strategy sees it as `open`).
    Accepted,
    /// Some filled, the rest still working.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled (by a user, the kill switch, or the engine).
    Cancelled,
    /// Refused by validation or the risk checks.
    Rejected,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Accepted,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Cancelled,
        OrderStatus::Rejected,
    ];
    /// The statuses of orders the store holds as still working.
    pub const WORKING: [OrderStatus; 2] = [OrderStatus::Accepted, OrderStatus::PartiallyFilled];

    /// Its text form.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Accepted => "accepted",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Rejected => "rejected",
        }
    }

    fn text(self) -> &'static str {
        self.as_str()
    }

    /// Whether the order may still fill, be cancelled or be modified.
    pub const fn is_working(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending | OrderStatus::Accepted | OrderStatus::PartiallyFilled
        )
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        OrderStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                unknown(
                    "order status",
                    s,
                    "pending, accepted, partially_filled, filled, cancelled or rejected",
                )
            })
    }
}

text_form!(OrderStatus);

impl Side {
    /// Its text form: `buy` or `sell`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The other side.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// `quantity` signed for this side (negative for a sell).
    pub fn signed(self, quantity: f64) -> f64 {
        match self {
            Side::Buy => quantity,
            Side::Sell => -quantity,
        }
    }
}

impl FromStr for Side {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        match s {
            "buy" => Ok(Side::Buy),
            "sell" => Ok(Side::Sell),
            _ => Err(unknown("side", s, "buy or sell")),
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Side {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse()
    }
}

/// The direction of an open position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PositionSide {
    Long,
    Short,
}

impl PositionSide {
    /// Its text form: `long` or `short`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PositionSide::Long => "long",
            PositionSide::Short => "short",
        }
    }

    fn text(self) -> &'static str {
        self.as_str()
    }

    /// The side of a signed quantity (flat counts as long).
    pub fn of(quantity: f64) -> PositionSide {
        if quantity < 0.0 {
            PositionSide::Short
        } else {
            PositionSide::Long
        }
    }
}

impl FromStr for PositionSide {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        match s {
            "long" => Ok(PositionSide::Long),
            "short" => Ok(PositionSide::Short),
            _ => Err(unknown("position side", s, "long or short")),
        }
    }
}

text_form!(PositionSide);

/// The kind of an order as it is stored and shown (the prices it carries are beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderType {
    Market,
    Limit,
    Stop,
    StopLimit,
    TrailingStop,
}

impl OrderType {
    /// Every value, in the order the API documents them.
    pub const ALL: [OrderType; 5] = [
        OrderType::Market,
        OrderType::Limit,
        OrderType::Stop,
        OrderType::StopLimit,
        OrderType::TrailingStop,
    ];

    /// Its text form: `market`, `limit`, `stop`, `stop_limit` or `trailing_stop`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
            OrderType::Stop => "stop",
            OrderType::StopLimit => "stop_limit",
            OrderType::TrailingStop => "trailing_stop",
        }
    }

    fn text(self) -> &'static str {
        self.as_str()
    }

    /// The type of an order of kind `kind`.
    pub const fn of(kind: &crate::model::OrderKind) -> OrderType {
        use crate::model::OrderKind;
        match kind {
            OrderKind::Market => OrderType::Market,
            OrderKind::Limit(_) => OrderType::Limit,
            OrderKind::Stop(_) => OrderType::Stop,
            OrderKind::StopLimit { .. } => OrderType::StopLimit,
            OrderKind::TrailingStop(_) => OrderType::TrailingStop,
        }
    }
}

impl FromStr for OrderType {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        OrderType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                unknown(
                    "order type",
                    s,
                    "market, limit, stop, stop_limit or trailing_stop",
                )
            })
    }
}

text_form!(OrderType);

impl crate::model::TimeInForce {
    /// Its text form: `gtc`, `day`, `ioc` or `fok`.
    pub const fn as_str(self) -> &'static str {
        use crate::model::TimeInForce;
        match self {
            TimeInForce::Gtc => "gtc",
            TimeInForce::Day => "day",
            TimeInForce::Ioc => "ioc",
            TimeInForce::Fok => "fok",
        }
    }
}

impl FromStr for crate::model::TimeInForce {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        use crate::model::TimeInForce;
        [
            TimeInForce::Gtc,
            TimeInForce::Day,
            TimeInForce::Ioc,
            TimeInForce::Fok,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| unknown("time in force", s, "gtc, day, ioc or fok"))
    }
}

impl fmt::Display for crate::model::TimeInForce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for crate::model::TimeInForce {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse()
    }
}

/// A strategy's id, as the store numbers strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StrategyId(pub i64);

impl fmt::Display for StrategyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whose book an order, fill or position is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountId {
    /// The shared manual account of earlier versions (kept so their rows read back and
    /// their positions stay booked); new manual orders go to the placing user's account.
    Manual,
    /// A user's own paper account: the orders they place by hand through the API (REST,
    /// WebSocket, API keys).
    User(i64),
    /// A strategy's live trading.
    Strategy(StrategyId),
}

impl AccountId {
    /// The text form: `manual`, `user:<id>` or `strategy:<id>`.
    pub fn text(self) -> String {
        match self {
            AccountId::Manual => "manual".to_string(),
            AccountId::User(id) => format!("user:{id}"),
            AccountId::Strategy(id) => format!("strategy:{id}"),
        }
    }

    /// Whether orders of this account are placed by hand (not by a strategy).
    pub fn is_manual(self) -> bool {
        matches!(self, AccountId::Manual | AccountId::User(_))
    }
}

impl FromStr for AccountId {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, UnknownValue> {
        if s == "manual" {
            return Ok(AccountId::Manual);
        }
        // Digits only, at most 18: the form the API documents (no sign, no overflow).
        let id = |id: &str| {
            ((1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()))
                .then(|| id.parse::<i64>().ok())
                .flatten()
        };
        let strategy = s.strip_prefix("strategy:").and_then(id);
        let user = s.strip_prefix("user:").and_then(id);
        match (strategy, user) {
            (Some(id), _) => Ok(AccountId::Strategy(StrategyId(id))),
            (_, Some(id)) => Ok(AccountId::User(id)),
            _ => Err(unknown("account", s, "manual, user:<id> or strategy:<id>")),
        }
    }
}

text_form!(AccountId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_text() {
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in [Side::Buy, Side::Sell] {
            assert_eq!(s.as_str().parse::<Side>(), Ok(s));
        }
        for t in OrderType::ALL {
            assert_eq!(t.as_str().parse::<OrderType>(), Ok(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        use crate::model::TimeInForce;
        for t in [
            TimeInForce::Gtc,
            TimeInForce::Day,
            TimeInForce::Ioc,
            TimeInForce::Fok,
        ] {
            assert_eq!(t.as_str().parse::<TimeInForce>(), Ok(t));
            // The serde form (the contract's) and the text form agree.
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert!("GTC".parse::<TimeInForce>().is_err());
        for s in [PositionSide::Long, PositionSide::Short] {
            assert_eq!(s.as_str().parse::<PositionSide>(), Ok(s));
        }
        for a in [
            AccountId::Manual,
            AccountId::User(7),
            AccountId::Strategy(StrategyId(42)),
        ] {
            assert_eq!(a.text().parse::<AccountId>(), Ok(a));
            assert_eq!(
                serde_json::from_str::<AccountId>(&serde_json::to_string(&a).unwrap()).unwrap(),
                a
            );
        }
        assert_eq!(AccountId::Strategy(StrategyId(7)).to_string(), "strategy:7");
        assert_eq!(AccountId::User(3).to_string(), "user:3");
        assert!("user:-1".parse::<AccountId>().is_err());
        assert!("user:".parse::<AccountId>().is_err());
    }

    #[test]
    fn unknown_text_says_what_it_may_be() {
        assert_eq!(
            "open".parse::<OrderStatus>().unwrap_err().to_string(),
            "unknown order status \"open\": expected pending, accepted, partially_filled, filled, cancelled or rejected"
        );
        assert_eq!(
            "strategy:x".parse::<AccountId>().unwrap_err().to_string(),
            "unknown account \"strategy:x\": expected manual, user:<id> or strategy:<id>"
        );
        assert!("Buy".parse::<Side>().is_err());
    }
}
