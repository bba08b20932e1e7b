"""sma-cross in Python: the Rust `strategies/sma-cross` decision for decision.

A cross up at bar t is `fast[t-1] <= slow[t-1] and fast[t] > slow[t]`; a cross down is the
mirror. `mode = long_only` goes long on a cross up and flat on a cross down; `mode = flip` goes
long on a cross up and short on a cross down (the first signal may open a short). A signal
agreeing with the current side is ignored. `sizing = fixed` trades `quantity` units;
`sizing = equity` trades the fraction `quantity` of equity, resolved at fill time.

The moving average is the correctly rounded sum of the window divided by the period
(`math.fsum`), which is what the Rust SDK's `Sma` computes, so the two agree bit for bit.

Build (see README.md): componentize-py -d ../../../wit/since_v0.2.0 -w strategy \
    componentize --stub-wasi app -o sma_cross_py.wasm
"""

import math
from collections import deque
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

# name, default, kind, description: the Rust sma-cross's `describe`, field for field.
PARAMS = [
    types.ParamSpec(
        "fast",
        "fast SMA period, bars",
        types.ParamKind_Int(types.IntRange(1, 500, 1)),
        types.ParamValue_Int(10),
    ),
    types.ParamSpec(
        "slow",
        "slow SMA period, bars",
        types.ParamKind_Int(types.IntRange(2, 2000, 1)),
        types.ParamValue_Int(30),
    ),
    types.ParamSpec(
        "mode",
        "flat or short on a cross down",
        types.ParamKind_Choice(["long_only", "flip"]),
        types.ParamValue_Choice("long_only"),
    ),
    types.ParamSpec(
        "sizing",
        "quantity is units (fixed) or a fraction of equity",
        types.ParamKind_Choice(["fixed", "equity"]),
        types.ParamValue_Choice("fixed"),
    ),
    types.ParamSpec(
        "quantity",
        "units, or fraction of equity with sizing=equity",
        types.ParamKind_Float(types.FloatRange(0.0, 1e12, 1.0)),
        types.ParamValue_Float(1.0),
    ),
]

FLAT, LONG, SHORT = 0, 1, 2


def resolve(given: List[types.Param]) -> dict:
    """The specs' defaults with `given` merged over them, checked as the Rust SDK checks them."""
    values = {s.name: s.default.value for s in PARAMS}
    specs = {s.name: s for s in PARAMS}
    for p in given:
        spec = specs.get(p.name)
        if spec is None:
            known = ", ".join(s.name for s in PARAMS)
            raise Err(f"unknown parameter `{p.name}` (known: {known})")
        kind, v = spec.kind, p.value
        if isinstance(kind, types.ParamKind_Int) and isinstance(v, types.ParamValue_Int):
            r = kind.value
            if not r.min <= v.value <= r.max:
                raise Err(f"parameter `{p.name}` = {v.value} is outside {r.min}..={r.max}")
            values[p.name] = v.value
        elif isinstance(kind, types.ParamKind_Float) and isinstance(
            v, (types.ParamValue_Float, types.ParamValue_Int)
        ):
            r, x = kind.value, float(v.value)
            if not (math.isfinite(x) and r.min <= x <= r.max):
                raise Err(f"parameter `{p.name}` = {x} is outside {r.min}..={r.max}")
            values[p.name] = x
        elif isinstance(kind, types.ParamKind_Choice) and isinstance(
            v, types.ParamValue_Choice
        ):
            if v.value not in kind.value:
                choices = ", ".join(kind.value)
                raise Err(f"parameter `{p.name}` = `{v.value}` is not one of: {choices}")
            values[p.name] = v.value
        else:
            raise Err(f"parameter `{p.name}` has the wrong type")
    return values


class Sma:
    """The mean of the last `period` values, `None` until `period` values have been seen."""

    def __init__(self, period: int):
        self.period = max(period, 1)
        self.window: deque = deque(maxlen=self.period)

    def update(self, x: float) -> Optional[float]:
        self.window.append(x)
        if len(self.window) < self.period:
            return None
        try:
            return math.fsum(self.window) / self.period
        except (OverflowError, ValueError):
            # Infinities or an overflowing sum: IEEE arithmetic, as the SDK would give.
            return sum(self.window) / self.period


class Crossover:
    """Two SMAs and the previous bar's values: the whole decision state."""

    def __init__(self, fast: int, slow: int):
        self.fast = Sma(fast)
        self.slow = Sma(slow)
        self.prev: Optional[Tuple[float, float]] = None

    def update(self, close: float) -> int:
        """Feed one close: +1 for a cross up, -1 for a cross down, 0 for none."""
        f = self.fast.update(close)
        s = self.slow.update(close)
        if f is None or s is None:
            return 0
        cross = 0
        if self.prev is not None:
            pf, ps = self.prev
            if pf <= ps and f > s:
                cross = 1
            elif pf >= ps and f < s:
                cross = -1
        self.prev = (f, s)
        return cross


def submit(symbol: str, side: types.Side, quantity: types.Quantity) -> bool:
    order = types.OrderRequest(
        symbol=symbol,
        side=side,
        quantity=quantity,
        kind=types.OrderKind_Market(),
        time_in_force=types.TimeInForce.GTC,
        take_profit=None,
        stop_loss=None,
        oco_group=None,
        tag=None,
    )
    try:
        host.submit_order(order)
        return True
    except Err:
        return False


class SmaCross:
    """The strategy: one crossover per symbol."""

    def __init__(self, params: dict, symbols: List[str]):
        fast, slow = params["fast"], params["slow"]
        if fast >= slow:
            raise Err(f"fast ({fast}) must be shorter than slow ({slow})")
        n = max(len(symbols), 1)
        self.cross = [Crossover(fast, slow) for _ in range(n)]
        self.side = [FLAT] * n
        self.symbols = list(symbols)
        self.flip = params["mode"] == "flip"
        self.equity_sizing = params["sizing"] == "equity"
        self.quantity = params["quantity"]

    def on_bar(self, symbol_id: int, bar: types.Bar) -> None:
        i = symbol_id
        if i >= len(self.cross):
            return
        cross = self.cross[i].update(bar.close)
        if cross == 0:
            return
        name = self.symbols[i] if i < len(self.symbols) else ""
        current = self.side[i]
        if cross > 0:
            if current == LONG:
                return
            want, side = LONG, types.Side.BUY
            reversing = self.quantity if current == SHORT else 0.0
        elif not self.flip:
            if current == LONG:
                # long_only: close the whole position, whatever its size.
                held = host.get_position(name).quantity
                if held > 0.0 and submit(name, types.Side.SELL, types.Quantity_Units(held)):
                    self.side[i] = FLAT
            return
        else:
            if current == SHORT:
                return
            want, side = SHORT, types.Side.SELL
            reversing = self.quantity if current == LONG else 0.0
        if self.equity_sizing:
            # The exchange closes any opposite position first, then sizes on equity.
            quantity = types.Quantity_EquityFraction(self.quantity)
        else:
            quantity = types.Quantity_Units(self.quantity + reversing)
        if submit(name, side, quantity):
            self.side[i] = want


# The configured strategy. componentize-py does not keep one `Guest` object between calls
# (what `configure` sets on `self` is gone by `on-bars`), so the state lives here.
strategy: Optional[SmaCross] = None


class Guest(exports.Guest):
    def describe(self) -> types.StrategyInfo:
        return types.StrategyInfo(
            name="sma-cross",
            version="1.0.0",
            description="Moving-average crossover (long_only or flip), fixed or equity sizing",
            symbols=[],
            params=PARAMS,
        )

    def configure(self, params: List[types.Param], symbols: List[str]) -> None:
        global strategy
        strategy = SmaCross(resolve(params), symbols)

    def on_bar(self, symbol_id: int, bar: types.Bar) -> None:
        if strategy is not None:
            strategy.on_bar(symbol_id, bar)

    def on_bars(self) -> None:
        if strategy is None:
            return
        on_bar = strategy.on_bar
        while (event := host.next_bar()) is not None:
            on_bar(event.symbol_id, event.bar)

    def on_tick(self, tick: types.Tick) -> None:
        pass

    def on_fill(self, fill: types.Fill) -> None:
        pass

    def on_timer(self, now_ns: int) -> None:
        pass

    # No state survives a hot swap: the new code starts its averages afresh.
    def snapshot(self) -> bytes:
        return b""

    def restore(self, state: bytes) -> None:
        pass
