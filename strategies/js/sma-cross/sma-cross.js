// sma-cross in JavaScript: the Rust `strategies/sma-cross` decision for decision.
//
// A cross up at bar t is `fast[t-1] <= slow[t-1] && fast[t] > slow[t]`; a cross down is the
// mirror. `mode = long_only` goes long on a cross up and flat on a cross down; `mode = flip`
// goes long on a cross up and short on a cross down (the first signal may open a short). A
// signal agreeing with the current side is ignored. `sizing = fixed` trades `quantity` units;
// `sizing = equity` trades the fraction `quantity` of equity, resolved at fill time.
//
// Build (see README.md): npm ci && npm run build

import host from "qtm:strategy/host@0.2.0";

// name, default, kind, description: the Rust sma-cross's `describe`, field for field.
const PARAMS = [
  {
    name: "fast",
    description: "fast SMA period, bars",
    kind: { tag: "int", val: { min: 1, max: 500, step: 1 } },
    default: { tag: "int", val: 10 },
  },
  {
    name: "slow",
    description: "slow SMA period, bars",
    kind: { tag: "int", val: { min: 2, max: 2000, step: 1 } },
    default: { tag: "int", val: 30 },
  },
  {
    name: "mode",
    description: "flat or short on a cross down",
    kind: { tag: "choice", val: ["long_only", "flip"] },
    default: { tag: "choice", val: "long_only" },
  },
  {
    name: "sizing",
    description: "quantity is units (fixed) or a fraction of equity",
    kind: { tag: "choice", val: ["fixed", "equity"] },
    default: { tag: "choice", val: "fixed" },
  },
  {
    name: "quantity",
    description: "units, or fraction of equity with sizing=equity",
    kind: { tag: "float", val: { min: 0, max: 1e12, step: 1 } },
    default: { tag: "float", val: 1 },
  },
];

const FLAT = 0;
const LONG = 1;
const SHORT = 2;

// The specs' defaults with `given` merged over them, checked as the Rust SDK checks them.
function resolve(given) {
  const values = {};
  for (const s of PARAMS) values[s.name] = s.default.val;
  for (const p of given) {
    const spec = PARAMS.find((s) => s.name === p.name);
    if (spec === undefined) {
      const known = PARAMS.map((s) => s.name).join(", ");
      throw `unknown parameter \`${p.name}\` (known: ${known})`;
    }
    const kind = spec.kind;
    const v = p.value;
    if (kind.tag === "int" && v.tag === "int") {
      const r = kind.val;
      if (v.val < r.min || v.val > r.max) {
        throw `parameter \`${p.name}\` = ${v.val} is outside ${r.min}..=${r.max}`;
      }
      values[p.name] = Number(v.val);
    } else if (kind.tag === "float" && (v.tag === "float" || v.tag === "int")) {
      const r = kind.val;
      const x = Number(v.val);
      if (!Number.isFinite(x) || x < r.min || x > r.max) {
        throw `parameter \`${p.name}\` = ${x} is outside ${r.min}..=${r.max}`;
      }
      values[p.name] = x;
    } else if (kind.tag === "choice" && v.tag === "choice") {
      if (!kind.val.includes(v.val)) {
        throw `parameter \`${p.name}\` = \`${v.val}\` is not one of: ${kind.val.join(", ")}`;
      }
      values[p.name] = v.val;
    } else {
      throw `parameter \`${p.name}\` has the wrong type`;
    }
  }
  return values;
}

// `a + b` as a rounded sum and its exact error (Knuth's TwoSum).
function twoSum(a, b) {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}

// The mean of the last `period` values, null until `period` values have been seen: the Rust
// SDK's `Sma` operation for operation. The window sum is kept exactly as an unevaluated pair
// `hi + lo` (TwoSum), and the mean is `(hi + lo) / period`: the correctly rounded window sum
// divided by the period.
class Sma {
  constructor(period) {
    this.period = Math.max(period, 1);
    this.ring = new Float64Array(this.period);
    this.pos = 0;
    this.len = 0;
    this.hi = 0;
    this.lo = 0;
  }

  update(x) {
    const old = this.ring[this.pos];
    this.ring[this.pos] = x;
    this.pos += 1;
    if (this.pos === this.period) this.pos = 0;
    if (this.len < this.period) {
      this.len += 1;
      this.add(x, 0);
    } else if (Number.isFinite(old)) {
      const [d, de] = twoSum(x, -old);
      this.add(d, de);
    } else {
      // A NaN or infinity leaves the window: rebuild the sum from the ring.
      this.hi = 0;
      this.lo = 0;
      for (let i = 0; i < this.len; i++) this.add(this.ring[i], 0);
    }
    return this.len === this.period ? (this.hi + this.lo) / this.period : null;
  }

  add(d, de) {
    const [s, e] = twoSum(this.hi, d);
    this.hi = s;
    this.lo += e + de;
  }
}

// Two SMAs and the previous bar's values: the whole decision state.
class Crossover {
  constructor(fast, slow) {
    this.fast = new Sma(fast);
    this.slow = new Sma(slow);
    this.prev = null;
  }

  // Feed one close: +1 for a cross up, -1 for a cross down, 0 for none.
  update(close) {
    const f = this.fast.update(close);
    const s = this.slow.update(close);
    if (f === null || s === null) return 0;
    let cross = 0;
    if (this.prev !== null) {
      const [pf, ps] = this.prev;
      if (pf <= ps && f > s) cross = 1;
      else if (pf >= ps && f < s) cross = -1;
    }
    this.prev = [f, s];
    return cross;
  }
}

function submit(symbol, side, quantity) {
  try {
    host.submitOrder({
      symbol,
      side,
      quantity,
      kind: { tag: "market" },
      timeInForce: "gtc",
      takeProfit: null,
      stopLoss: null,
      ocoGroup: null,
      tag: null,
    });
    return true;
  } catch (_refused) {
    return false;
  }
}

const state = {
  cross: [],
  side: [],
  symbols: [],
  flip: false,
  equitySizing: false,
  quantity: 1,
};

function onBar(symbolId, bar) {
  const i = symbolId;
  if (i >= state.cross.length) return;
  const cross = state.cross[i].update(bar.close);
  if (cross === 0) return;
  const name = i < state.symbols.length ? state.symbols[i] : "";
  const current = state.side[i];
  let want;
  let side;
  let reversing;
  if (cross > 0) {
    if (current === LONG) return;
    want = LONG;
    side = "buy";
    reversing = current === SHORT ? state.quantity : 0;
  } else if (!state.flip) {
    if (current === LONG) {
      // long_only: close the whole position, whatever its size.
      const held = host.getPosition(name).quantity;
      if (held > 0 && submit(name, "sell", { tag: "units", val: held })) {
        state.side[i] = FLAT;
      }
    }
    return;
  } else {
    if (current === SHORT) return;
    want = SHORT;
    side = "sell";
    reversing = current === LONG ? state.quantity : 0;
  }
  // With equity sizing the exchange closes any opposite position first, then sizes on equity.
  const quantity = state.equitySizing
    ? { tag: "equity-fraction", val: state.quantity }
    : { tag: "units", val: state.quantity + reversing };
  if (submit(name, side, quantity)) state.side[i] = want;
}

export const guest = {
  describe() {
    return {
      name: "sma-cross",
      version: "1.0.0",
      description: "Moving-average crossover (long_only or flip), fixed or equity sizing",
      symbols: [],
      params: PARAMS,
    };
  },

  configure(params, symbols) {
    const p = resolve(params);
    if (p.fast >= p.slow) {
      throw `fast (${p.fast}) must be shorter than slow (${p.slow})`;
    }
    const n = Math.max(symbols.length, 1);
    state.cross = Array.from({ length: n }, () => new Crossover(p.fast, p.slow));
    state.side = new Array(n).fill(FLAT);
    state.symbols = symbols.slice();
    state.flip = p.mode === "flip";
    state.equitySizing = p.sizing === "equity";
    state.quantity = p.quantity;
  },

  onBar,

  onBars() {
    for (let event = host.nextBar(); event !== null; event = host.nextBar()) {
      onBar(event.symbolId, event.bar);
    }
  },

  onTick(_tick) {},
  onFill(_fill) {},
  onTimer(_nowNs) {},

  // No state survives a hot swap: the new code starts its averages afresh.
  snapshot() {
    return new Uint8Array(0);
  },

  restore(_state) {},
};
