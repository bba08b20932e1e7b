#!/usr/bin/env python3
"""backtesting.py 0.6.6 `Backtest.optimize` over an SMA-cross grid (fast 2..60 step 2 × slow
10..250 step 10, fast < slow, long only, all-in), maximizing the Sharpe ratio, on the first ROWS
bars of CSV: the peer of `qtm evolve`'s evaluations per second (tests/benches/evolve.sh).
Prints JSON: evaluations, seconds, evaluations_per_sec, best.
Usage: backtesting_py_optimize.py CSV ROWS"""
import json, sys, time, warnings
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
warnings.filterwarnings("ignore")
path, rows = sys.argv[1], int(sys.argv[2])
df = pd.read_csv(path, nrows=rows); df.index = pd.to_datetime(df.pop("ts"), unit="s")
df.columns = ["Open", "High", "Low", "Close", "Volume"]
def SMA(x, n): return pd.Series(x).rolling(n).mean().values
class SmaCross(Strategy):
    fast = 10
    slow = 30
    def init(self):
        self.f = self.I(SMA, self.data.Close, self.fast); self.s = self.I(SMA, self.data.Close, self.slow)
    def next(self):
        if crossover(self.f, self.s) and not self.position:
            self.buy()
        elif crossover(self.s, self.f) and self.position:
            self.position.close()
bt = Backtest(df, SmaCross, cash=10_000, commission=0.0)
fast, slow = range(2, 61, 2), range(10, 251, 10)
n = sum(1 for f in fast for s in slow if f < s)
t0 = time.perf_counter()
st = bt.optimize(fast=fast, slow=slow, constraint=lambda p: p.fast < p.slow, maximize="Sharpe Ratio")
dt = time.perf_counter() - t0
print(json.dumps({"evaluations": n, "seconds": dt, "evaluations_per_sec": n / dt,
                  "best": {"fast": int(st._strategy.fast), "slow": int(st._strategy.slow)}}))
